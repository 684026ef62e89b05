import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { CheckpointError } from '../../../server/src/checkpoint/errors';
import { listExpectedTensors } from '../../../server/src/checkpoint/expectedTensors';
import { loadCheckpoint } from '../../../server/src/checkpoint/loadCheckpoint';
import { SUPPORTED_ARCHITECTURES, type DType } from '../../../server/src/checkpoint/modelSpec';
import { writeSafetensors } from '../../../server/src/checkpoint/safetensorsWriter';
import { writeRandomCheckpoint, type RandomCheckpoint, type RandomCheckpointOptions } from '../../support/randomCheckpoint';

let root: string;
let counter = 0;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'moe-checkpoint-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

function freshFolder(): string {
  return join(root, `model-${counter++}`);
}

async function writeModel(options: RandomCheckpointOptions) {
  return writeRandomCheckpoint(freshFolder(), options);
}

async function assertLoadFails(path: string, code: string, patterns: RegExp[]): Promise<CheckpointError> {
  let caught: CheckpointError | undefined;
  await assert.rejects(loadCheckpoint(path), (error: unknown) => {
    assert.ok(error instanceof CheckpointError, String(error));
    caught = error;
    return true;
  });
  assert.ok(caught);
  assert.equal(caught.code, code, caught.message);
  for (const pattern of patterns) assert.match(caught.message, pattern);
  return caught;
}

for (const architecture of SUPPORTED_ARCHITECTURES) {
  for (const [dtype, shards] of [['F32', 1], ['F16', 3], ['BF16', 2]] as [DType, number][]) {
    test(`${architecture} ${dtype} in ${shards} file(s) loads with every tensor as written`, async () => {
      const written = await writeModel({ architecture, dtype, shards, seed: counter + 7 });
      const loaded = await loadCheckpoint(written.folder);
      try {
        assert.equal(loaded.spec.architecture, architecture);
        assert.deepEqual(loaded.spec.layers, written.spec.layers);
        assert.deepEqual(loaded.config, written.config);
        assert.deepEqual(loaded.weights.names().sort(), [...written.weights.keys()].sort());
        for (const [name, values] of written.weights) {
          const info = loaded.weights.info(name);
          // DeepSeek V3's and GLM-4.5's correction bias is F32 as published, whatever the rest.
          const stored = name.endsWith('.e_score_correction_bias') ? 'F32' : dtype;
          assert.equal(info.dtype, stored);
          assert.equal(info.byteLength, values.length * (stored === 'F32' ? 4 : 2));
          assert.deepEqual(await loaded.weights.readFloat32(name), values, name);
        }
        const firstName = written.spec.tensors.embedTokens;
        assert.equal((await loaded.weights.readRaw(firstName)).byteLength, loaded.weights.info(firstName).byteLength);
        // GPT-OSS's MXFP4 blocks and scales are bytes: kept for export, never decoded as numbers.
        assert.deepEqual(loaded.uncomputableTensors.map((t) => t.name).sort(), listExpectedTensors(written.spec).filter((t) => t.dtype === 'U8').map((t) => t.name).sort());
      } finally {
        await loaded.weights.close();
      }
    });
  }
}

test('tied embeddings load without lm_head', async () => {
  const written = await writeModel({ architecture: 'OlmoeForCausalLM', tieWordEmbeddings: true });
  const loaded = await loadCheckpoint(written.folder);
  assert.equal(loaded.weights.has('lm_head.weight'), false);
  assert.equal(loaded.spec.tieWordEmbeddings, true);
  await loaded.weights.close();
});

test('the tokenizer encodes, decodes and gives offsets that cover the text', async () => {
  const written = await writeModel({ architecture: 'Qwen3MoeForCausalLM' });
  const { tokenizer, weights } = await loadCheckpoint(written.folder);
  await weights.close();
  assert.equal(tokenizer.bosTokenId, 1);
  assert.equal(tokenizer.eosTokenId, 2);
  const text = 'The experts are kept. Héllo 🙂 wörld  2024!';
  const { ids, offsets } = tokenizer.encodeWithOffsets(text);
  assert.deepEqual(ids, tokenizer.encode(text));
  assert.equal(tokenizer.decode(ids), text);
  assert.ok(ids.every((id) => id >= 0 && id < written.spec.vocabSize));
  assert.equal(offsets.length, ids.length);
  // Contiguous, in order, and together exactly the text.
  assert.equal(offsets[0][0], 0);
  assert.equal(offsets[offsets.length - 1][1], text.length);
  for (let i = 1; i < offsets.length; i++) assert.equal(offsets[i][0], offsets[i - 1][1]);
  assert.equal(text.slice(offsets[0][0], offsets[0][1]), 'The');
  assert.equal(text.slice(offsets[1][0], offsets[1][1]), ' experts');
  // 'é' is two byte-level tokens: the first completes no character, the second carries it.
  const eStart = text.indexOf('é');
  const eTokens = offsets.filter(([start, end]) => end === eStart + 1 || (start === eStart && end === eStart));
  assert.deepEqual(eTokens, [[eStart, eStart], [eStart, eStart + 1]]);
  // The emoji (a surrogate pair, four UTF-8 bytes) lands whole in one token.
  const emoji = text.indexOf('🙂');
  assert.ok(offsets.some(([start, end]) => start <= emoji && end === emoji + 2));
  assert.ok(!offsets.some(([, end]) => end === emoji + 1));
});

test('special tokens written in the text get their own offsets', async () => {
  const written = await writeModel({ architecture: 'OlmoeForCausalLM' });
  const { tokenizer, weights } = await loadCheckpoint(written.folder);
  await weights.close();
  const text = '<s>The model</s>';
  const { ids, offsets } = tokenizer.encodeWithOffsets(text);
  assert.equal(ids[0], 1);
  assert.equal(ids[ids.length - 1], 2);
  assert.deepEqual(offsets[0], [0, 3]);
  assert.deepEqual(offsets[offsets.length - 1], [text.length - 4, text.length]);
  assert.deepEqual(offsets.map(([start, end]) => text.slice(start, end)).join(''), text);
});

test('a missing tensor is reported with its name', async () => {
  const written = await writeModel({ architecture: 'MixtralForCausalLM' });
  const missing = 'model.layers.1.block_sparse_moe.experts.3.w2.weight';
  const keep = [...written.weights.keys()].filter((name) => name !== missing);
  await writeSafetensors(
    join(written.folder, 'model.safetensors'),
    keep.map((name) => ({ name, dtype: 'F32', shape: shapeOf(written, name) })),
    (tensor) => new Uint8Array(written.weights.get(tensor.name)!.buffer.slice(0)),
  );
  await assertLoadFails(written.folder, 'missingTensor', [new RegExp(`missing tensor ${missing.replace(/\./g, '\\.')}`), /1 problem\b/]);
});

test('a missing lm_head suggests tie_word_embeddings', async () => {
  const written = await writeModel({ architecture: 'MixtralForCausalLM' });
  const keep = [...written.weights.keys()].filter((name) => name !== 'lm_head.weight');
  await writeSafetensors(
    join(written.folder, 'model.safetensors'),
    keep.map((name) => ({ name, dtype: 'F32', shape: shapeOf(written, name) })),
    (tensor) => new Uint8Array(written.weights.get(tensor.name)!.buffer.slice(0)),
  );
  await assertLoadFails(written.folder, 'missingTensor', [/missing tensor lm_head\.weight/, /"tie_word_embeddings": true/]);
});

test('a config that disagrees with the weights reports the first few shapes, file and tensor', async () => {
  const written = await writeModel({ architecture: 'Qwen2MoeForCausalLM' });
  const config = JSON.parse(await readFile(join(written.folder, 'config.json'), 'utf8'));
  config.moe_intermediate_size = 16;
  await writeFile(join(written.folder, 'config.json'), JSON.stringify(config));
  await assertLoadFails(written.folder, 'wrongShape', [
    /model\.safetensors: model\.layers\.0\.mlp\.experts\.0\.gate_proj\.weight has shape \[32, 64\], expected \[16, 64\]/,
    /\(24 problems\)/,
    /… and 19 more/,
  ]);
});

test('a required tensor in a non-float dtype is refused', async () => {
  const written = await writeModel({ architecture: 'OlmoeForCausalLM' });
  const odd = 'model.norm.weight';
  await writeSafetensors(
    join(written.folder, 'model.safetensors'),
    [...written.weights.keys()].map((name) => ({ name, dtype: name === odd ? 'I32' : 'F32', shape: shapeOf(written, name) })),
    (tensor) => new Uint8Array(written.weights.get(tensor.name)!.buffer.slice(0)),
  );
  await assertLoadFails(written.folder, 'unsupportedDtype', [/model\.safetensors: model\.norm\.weight is I32; expected F32, F16 or BF16/]);
});

test('an unknown architecture in config.json is refused', async () => {
  const written = await writeModel({ architecture: 'MixtralForCausalLM' });
  const config = JSON.parse(await readFile(join(written.folder, 'config.json'), 'utf8'));
  config.architectures = ['LlamaForCausalLM'];
  await writeFile(join(written.folder, 'config.json'), JSON.stringify(config));
  await assertLoadFails(written.folder, 'unsupportedArchitecture', [/LlamaForCausalLM is not supported/, /OlmoeForCausalLM/, /DeepseekV3ForCausalLM, DeepseekV2ForCausalLM/]);
});

test('a missing tokenizer.json is refused', async () => {
  const written = await writeModel({ architecture: 'MixtralForCausalLM', tokenizer: false });
  await assertLoadFails(written.folder, 'notFound', [/tokenizer\.json is missing/]);
});

test('a missing config.json is refused', async () => {
  const written = await writeModel({ architecture: 'MixtralForCausalLM' });
  await unlink(join(written.folder, 'config.json'));
  await assertLoadFails(written.folder, 'notFound', [/config\.json is missing/]);
});

test('a pickle-only folder is refused with the reason and a conversion command', async () => {
  const folder = freshFolder();
  await mkdir(folder);
  await writeFile(join(folder, 'config.json'), JSON.stringify({ architectures: ['MixtralForCausalLM'] }));
  await writeFile(join(folder, 'pytorch_model.bin'), 'not really a pickle');
  await assertLoadFails(folder, 'unsafeFormat', [/pytorch_model\.bin is a PyTorch pickle/, /arbitrary code/, /save_pretrained\(.*safe_serialization=True\)/]);
});

test('opening a .pt file directly is refused', async () => {
  const folder = freshFolder();
  await mkdir(folder);
  await writeFile(join(folder, 'weights.pt'), 'x');
  await assertLoadFails(join(folder, 'weights.pt'), 'unsafeFormat', [/weights\.pt is a PyTorch pickle/]);
});

test('safetensors are used and pickles ignored when a folder has both', async () => {
  const written = await writeModel({ architecture: 'Qwen3MoeForCausalLM' });
  await writeFile(join(written.folder, 'pytorch_model.bin'), 'ignored');
  const loaded = await loadCheckpoint(written.folder);
  await loaded.weights.close();
  assert.equal(loaded.spec.architecture, 'Qwen3MoeForCausalLM');
});

test('a shard named by the index but absent is refused', async () => {
  const written = await writeModel({ architecture: 'OlmoeForCausalLM', shards: 2 });
  await unlink(join(written.folder, written.files[1]));
  await assertLoadFails(written.folder, 'invalidIndex', [
    /model\.safetensors\.index\.json: names shard model-00002-of-00002\.safetensors, which is not in/,
  ]);
});

test('an index naming a tensor its shard does not hold is refused', async () => {
  const written = await writeModel({ architecture: 'OlmoeForCausalLM', shards: 2 });
  const indexPath = join(written.folder, 'model.safetensors.index.json');
  const index = JSON.parse(await readFile(indexPath, 'utf8'));
  index.weight_map['model.embed_tokens.weight'] = written.files[1];
  index.weight_map['model.layers.9.phantom.weight'] = written.files[0];
  await writeFile(indexPath, JSON.stringify(index));
  await assertLoadFails(written.folder, 'invalidIndex', [
    /says tensor model\.embed_tokens\.weight is in model-00002-of-00002\.safetensors, but model-00002-of-00002\.safetensors has no such tensor \(it is in model-00001-of-00002\.safetensors\)/,
  ]);
});

test('a tensor stored in two shards is refused', async () => {
  const written = await writeModel({ architecture: 'MixtralForCausalLM', shards: 2 });
  const name = 'model.norm.weight';
  await writeSafetensors(
    join(written.folder, written.files[0]),
    [{ name, dtype: 'F32', shape: shapeOf(written, name) }],
    () => new Uint8Array(written.weights.get(name)!.buffer.slice(0)),
  );
  await assertLoadFails(written.folder, 'invalidIndex', [/model\.norm\.weight is stored in both model-00001-of-00002\.safetensors and model-00002-of-00002\.safetensors/]);
});

test('an index that escapes the folder is refused', async () => {
  const written = await writeModel({ architecture: 'MixtralForCausalLM', shards: 2 });
  const indexPath = join(written.folder, 'model.safetensors.index.json');
  const index = JSON.parse(await readFile(indexPath, 'utf8'));
  index.weight_map['model.norm.weight'] = '../elsewhere.safetensors';
  await writeFile(indexPath, JSON.stringify(index));
  await assertLoadFails(written.folder, 'invalidIndex', [/maps to "\.\.\/elsewhere\.safetensors"; expected a \.safetensors file name in the same folder/]);
});

test('several safetensors files without an index are refused', async () => {
  const written = await writeModel({ architecture: 'MixtralForCausalLM', shards: 2 });
  await unlink(join(written.folder, 'model.safetensors.index.json'));
  await assertLoadFails(written.folder, 'invalidIndex', [/has 2 safetensors files .* but no model\.safetensors\.index\.json/]);
});

test('a single differently named safetensors file is used', async () => {
  const written = await writeModel({ architecture: 'MixtralForCausalLM' });
  const bytes = await readFile(join(written.folder, 'model.safetensors'));
  await unlink(join(written.folder, 'model.safetensors'));
  await writeFile(join(written.folder, 'consolidated.safetensors'), bytes);
  const loaded = await loadCheckpoint(join(written.folder, 'config.json'));
  assert.equal(loaded.weights.info('model.norm.weight').file, join(written.folder, 'consolidated.safetensors'));
  await loaded.weights.close();
});

test('a corrupt weight file is refused through loadCheckpoint with its path', async () => {
  const written = await writeModel({ architecture: 'MixtralForCausalLM' });
  await writeFile(join(written.folder, 'model.safetensors'), new Uint8Array(4));
  await assertLoadFails(written.folder, 'invalidSafetensors', [/model\.safetensors is not a valid safetensors file/]);
});

function shapeOf(written: RandomCheckpoint, name: string): number[] {
  const found = listExpectedTensors(written.spec).find((tensor) => tensor.name === name);
  assert.ok(found, name);
  return found.shape;
}
