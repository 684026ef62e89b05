/**
 * A tokenizer whose regex backtracks without end, of a shape the load-time heuristic does not see
 * (`(a|a)+$`: an alternation of overlapping branches, star height 1), is stopped by the tokenizer
 * worker's time limit: a CheckpointError naming tokenizer.json and the row, the calling thread free
 * all along, and the next request served by a fresh worker (issue #15).
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { loadTokenizer } from '../../../server/src/checkpoint';
import { CheckpointError } from '../../../server/src/checkpoint/errors';
import { SandboxedTokenizer } from '../../../server/src/checkpoint/sandboxedTokenizer';
import { findCatastrophicPattern } from '../../../server/src/checkpoint/tokenizerPatterns';
import { isUserError } from '../../../server/src/errors';
import { modelIdentity, profileDataset, RuntimePool } from '../../../server/src/profile/run';
import { writeRandomCheckpoint } from '../../support/randomCheckpoint';

const ROW_MS = 1_500;
/** 2^40 ways to split the run of a's: hours for a backtracking engine, unless it is stopped. */
const HOSTILE_TEXT = `${'a'.repeat(40)}!`;

let root: string;
let valid: string;
let hostile: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'moe-tokenizer-sandbox-'));
  valid = join(root, 'valid');
  hostile = join(root, 'hostile');
  await writeRandomCheckpoint(valid, { architecture: 'MixtralForCausalLM', seed: 3, vocabSize: 300, numLayers: 2, numExperts: 4, topK: 2, hiddenSize: 8, numHeads: 2, numKvHeads: 1, expertIntermediateSize: 8 });
  await mkdir(hostile);
  for (const name of ['config.json', 'model.safetensors', 'tokenizer_config.json']) await writeFile(join(hostile, name), await readFile(join(valid, name)));
  const tokenizer = JSON.parse(await readFile(join(valid, 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
  tokenizer.pre_tokenizer = { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: '(a|a)+$' }, behavior: 'Isolated', invert: false }, tokenizer.pre_tokenizer] };
  await writeFile(join(hostile, 'tokenizer.json'), JSON.stringify(tokenizer));
  assert.equal(findCatastrophicPattern(tokenizer), undefined, 'the pattern gets past the load-time heuristic');
});
after(() => rm(root, { recursive: true, force: true }));

test('the sandboxed tokenizer gives the ids of the in-process one, with spans, cut and length', async () => {
  const reference = await loadTokenizer(valid);
  const sandboxed = await SandboxedTokenizer.open(valid);
  try {
    const texts = ['the expert router sends tokens', 'café x = ( 42 )', 'a'.repeat(30)];
    const rows = await sandboxed.tokenizeRows(texts.map((text) => ({ text, maxTokens: 5, offsetTokens: 3 })));
    rows.forEach((row, i) => {
      const ids = reference.encode(texts[i]);
      assert.deepEqual([...row.ids], ids.slice(0, 5));
      assert.equal(row.length, ids.length);
      assert.deepEqual(row.offsets, reference.encodeWithOffsets(texts[i]).offsets.slice(0, 3));
    });
    assert.equal(sandboxed.bosTokenId, reference.bosTokenId);
  } finally {
    await sandboxed.close();
  }
});

test('a row the tokenizer backtracks on is stopped within the limit; the thread stays free; the next row gets a fresh worker', async () => {
  const tokenizer = await SandboxedTokenizer.open(hostile, {}, { rowMs: ROW_MS });
  try {
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 100);
    const started = performance.now();
    const error = await tokenizer.tokenizeRows([{ text: 'fine', where: 'line 1 of data.jsonl' }, { text: HOSTILE_TEXT, where: 'line 2 of data.jsonl' }]).then(
      () => assert.fail('the hostile row was tokenised'),
      (caught: unknown) => caught,
    );
    const seconds = (performance.now() - started) / 1000;
    clearInterval(ticker);
    assert.ok(error instanceof CheckpointError && error.code === 'invalidTokenizer', String(error));
    assert.match(error.message, /hostile\/tokenizer\.json took more than 2 s to tokenise line 2 of data\.jsonl \(41 characters\) and was stopped/);
    assert.equal(error.file, join(hostile, 'tokenizer.json'));
    assert.ok(seconds < ROW_MS / 1000 + 3, `stopped after ${seconds.toFixed(1)} s`);
    // The thread ran its timers while the worker was stuck (about one tick per 100 ms).
    assert.ok(ticks >= (ROW_MS / 100) * 0.5, `only ${ticks} timer ticks in ${seconds.toFixed(1)} s`);
    const [row] = await tokenizer.tokenizeRows([{ text: 'after the hang' }]);
    assert.deepEqual([...row.ids], (await loadTokenizer(valid)).encode('after the hang'), 'the fresh worker tokenises as before');
  } finally {
    await tokenizer.close();
  }
});

test('profiling with that tokenizer fails with the message, and the pool serves the next request', async () => {
  const pool = new RuntimePool();
  pool.configure({ tokenizerLimits: { rowMs: ROW_MS } });
  const data = join(root, 'rows.jsonl');
  await writeFile(data, ['the expert router', HOSTILE_TEXT, 'sends tokens'].map((text) => JSON.stringify({ text })).join('\n'));
  try {
    const run = () => profileDataset({ datasetFile: data, modelFolder: hostile, field: { kind: 'field', field: 'text' }, workspaceFolder: root, runtimes: pool, settings: { threads: 1 }, force: true });
    for (let attempt = 0; attempt < 2; attempt++) {
      const error = await run().then(() => assert.fail('profiled'), (caught: unknown) => caught);
      assert.ok(isUserError(error), String(error));
      assert.match(error.message, /tokenizer\.json took more than 2 s to tokenise line 2 of rows\.jsonl/);
    }
    // The runtime stayed open (a tokenizer's fault is the user's): one model opened for both runs.
    assert.equal(pool.opened, 1);
    const { tokenizer } = await pool.get(await modelIdentity(hostile), 1);
    assert.equal((await tokenizer.tokenizeRows([{ text: 'sends tokens' }]))[0].length, (await loadTokenizer(valid)).encode('sends tokens').length);
  } finally {
    await pool.close();
  }
});
