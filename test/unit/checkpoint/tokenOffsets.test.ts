// Token offsets by anchored decoding (linear) against the plain whole-prefix alignment (quadratic),
// on a byte-level tokenizer (GPT-2 / Qwen / OLMoE), the demo model's, and a Llama-style Metaspace one
// with byte fallback: the same spans for every token of long mixed texts.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { loadTokenizer } from '../../../server/src/checkpoint/tokenizer';
import type { TextTokenizer } from '../../../server/src/checkpoint/modelSpec';
import { buildMetaspaceTokenizer, buildTinyTokenizer } from '../../support/tinyTokenizer';

/** The alignment as it was before anchoring: decode every whole prefix. */
function prefixOffsets(tokenizer: TextTokenizer, text: string): [number, number][] {
  const ids = tokenizer.encode(text);
  const offsets: [number, number][] = [];
  let cursor = 0;
  let attributed = 0;
  for (let k = 0; k < ids.length; k++) {
    const decoded = tokenizer.decode(ids.slice(0, k + 1)).slice(attributed);
    const lead = decoded.length > 1 && decoded[0] === ' ' && text[cursor] !== ' ' ? 1 : 0;
    const piece = decoded.slice(lead);
    let matched = 0;
    const limit = Math.min(piece.length, text.length - cursor);
    while (matched < limit && (piece[matched] === text[cursor + matched] || piece[matched].toLowerCase() === text[cursor + matched].toLowerCase())) matched++;
    if (matched > 0 && cursor + matched < text.length && /[\uD800-\uDBFF]/.test(text[cursor + matched - 1])) matched--;
    offsets.push([cursor, cursor + matched]);
    cursor += matched;
    attributed += matched > 0 ? lead + matched : decoded.includes('\uFFFD') ? 0 : decoded.length;
  }
  return offsets;
}

const SAMPLE = [
  'The experts are kept. Héllo 🙂 wörld  2024! ',
  'def route(x):\n    return top_k(softmax(x @ W.T), k=2)  # 🙂🙂 naïve café\n',
  '{"id": 17, "name": "Zoë", "tags": ["µ", "日本語", "ok"]}\n',
  '<s>special tokens</s> written in the text, and    runs of   spaces.\n',
  '3 + 4 = 7; 12 * 12 = 144; the model of the experts per token.\n',
].join('');

async function tokenizerFrom(files: { tokenizerJson: object; tokenizerConfig: object }): Promise<TextTokenizer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-offsets-'));
  try {
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(files.tokenizerJson));
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(files.tokenizerConfig));
    return await loadTokenizer(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const TOKENIZERS: [string, () => Promise<TextTokenizer>][] = [
  ['byte-level BPE', () => tokenizerFrom(buildTinyTokenizer(600))],
  ['the demo model\'s', () => loadTokenizer(path.resolve(__dirname, '../../../demo/model'))],
  ['Metaspace with byte fallback', () => tokenizerFrom(buildMetaspaceTokenizer())],
];

for (const [name, load] of TOKENIZERS) {
  test(`anchored offsets equal whole-prefix offsets: ${name}`, async () => {
    const tokenizer = await load();
    for (const text of [SAMPLE, SAMPLE.repeat(6), ' leading space', '🙂', '']) {
      const { ids, offsets } = tokenizer.encodeWithOffsets(text);
      assert.deepEqual(ids, tokenizer.encode(text));
      assert.deepEqual(offsets, prefixOffsets(tokenizer, text), `${name}: ${JSON.stringify(text.slice(0, 40))}`);
    }
    // The spans are in order and cover the text.
    const { offsets } = tokenizer.encodeWithOffsets(SAMPLE);
    for (let i = 1; i < offsets.length; i++) assert.equal(offsets[i][0], offsets[i - 1][1]);
    assert.equal(offsets.at(-1)![1], SAMPLE.length);
  });
}

test('a Metaspace tokenizer\'s spans are its words, past the space it prepends after <s>', async () => {
  const tokenizer = await tokenizerFrom(buildMetaspaceTokenizer());
  const text = 'the model of the experts Héllo 🙂';
  const { ids, offsets } = tokenizer.encodeWithOffsets(text);
  assert.equal(tokenizer.decode(ids), `<s> ${text}`, 'the decoder adds the space after <s>');
  const spans = offsets.map(([start, end]) => text.slice(start, end));
  assert.deepEqual(spans.slice(0, 6), ['', 'the', ' model', ' ', 'o', 'f'], 'bos gets an empty span; "▁the" is "the"; "▁", "o", "f" are " of"');
  // é is two byte-fallback tokens: the first completes no character, the second carries it; the
  // emoji is four, the last carrying both of its UTF-16 units.
  assert.ok(spans.includes('é') && spans.includes('🙂'), JSON.stringify(spans));
  assert.equal(spans.join(''), text);
});
