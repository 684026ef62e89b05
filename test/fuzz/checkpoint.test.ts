/**
 * Fuzzing the checkpoint readers: safetensors headers and data, the sharded index, config.json and
 * tokenizer.json, each written into a real model folder and opened the way `info`/`profile` open it.
 * Each surface has one folder, set up once, and each input overwrites only the file it replaces:
 * writing a whole model folder per input cost more than the reading under test.
 */
import fc from 'fast-check';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { loadCheckpoint } from '../../server/src/checkpoint';
import { SafetensorsFile } from '../../server/src/checkpoint/safetensors';
import { openWeights } from '../../server/src/checkpoint/weightFiles';
import { writeRandomCheckpoint } from '../support/randomCheckpoint';
import { afterSurfaces, beforeSurfaces, FUZZ_TMP, expectCleanOutcome, fuzzSurface, hostileJson, jsonText, surface, utf8 } from './harness';

let root: string;
let valid: string;
/** The valid checkpoint's config.json and tokenizer.json, parsed once. */
let validConfig: Record<string, unknown>;
let validTokenizer: Record<string, unknown>;
beforeSurfaces(async () => {
  root = mkdtempSync(path.join(FUZZ_TMP, 'moe-fuzz-checkpoint-'));
  valid = path.join(root, 'valid');
  await writeRandomCheckpoint(valid, { architecture: 'MixtralForCausalLM', numLayers: 1, numExperts: 2, topK: 1, hiddenSize: 8, numHeads: 2, numKvHeads: 1, expertIntermediateSize: 8 });
  validConfig = JSON.parse(readFileSync(path.join(valid, 'config.json'), 'utf8')) as Record<string, unknown>;
  validTokenizer = JSON.parse(readFileSync(path.join(valid, 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
});
afterSurfaces(() => rmSync(root, { recursive: true, force: true }));

const MODEL_FILES = ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'];

/**
 * The surface's model folder, made once with copies of `keep` from the valid checkpoint; `write`
 * replaces the fuzzed file in it and returns the folder.
 */
function surfaceFolder(name: string, file: string, keep: string[] = MODEL_FILES): (bytes: Uint8Array) => string {
  let folder: string | undefined;
  return (bytes) => {
    if (folder === undefined) {
      folder = path.join(root, name);
      mkdirSync(folder);
      for (const kept of keep) if (kept !== file) copyFileSync(path.join(valid, kept), path.join(folder, kept));
    }
    writeFileSync(path.join(folder, file), bytes);
    return folder;
  };
}

const DTYPES = ['F32', 'F16', 'BF16', 'I64', 'I32', 'U8', 'BOOL', 'F8_E4M3', 'F64', 'Q4', ''];

/** A safetensors header: plausible entries with hostile values mixed in, and a length prefix that may lie. */
const safetensorsBytes: fc.Arbitrary<Uint8Array> = fc
  .tuple(
    fc.dictionary(
      fc.oneof(fc.string({ maxLength: 20 }), fc.constantFrom('__metadata__', '__proto__', 'constructor')),
      fc.oneof(
        fc.record({ dtype: fc.constantFrom(...DTYPES), shape: fc.array(fc.nat(64), { maxLength: 4 }), data_offsets: fc.tuple(fc.nat(4096), fc.nat(4096)) }),
        fc.record({ dtype: hostileJson, shape: hostileJson, data_offsets: hostileJson }, { requiredKeys: [] }),
        hostileJson,
      ),
      { maxKeys: 6 },
    ),
    fc.nat(4096),
    fc.oneof(fc.constant('exact'), fc.constant('short'), fc.constant('huge'), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })),
  )
  .map(([header, dataBytes, lengthKind]) => {
    let json: Uint8Array;
    try {
      json = utf8(JSON.stringify(header));
    } catch {
      json = utf8('['.repeat(30_000));
    }
    const length = lengthKind === 'exact' ? BigInt(json.length) : lengthKind === 'short' ? BigInt(json.length >> 1) : lengthKind === 'huge' ? 2n ** 40n : (lengthKind as bigint);
    const bytes = new Uint8Array(8 + json.length + dataBytes);
    new DataView(bytes.buffer).setBigUint64(0, length, true);
    bytes.set(json, 8);
    return bytes;
  });

surface('safetensors', 'fuzz: safetensors headers and data', async () => {
  const write = surfaceFolder('safetensors', 'model.safetensors', []);
  await fuzzSurface('safetensors', safetensorsBytes, async (bytes) => {
    const file = path.join(write(bytes), 'model.safetensors');
    await expectCleanOutcome(file, async () => {
      const opened = await SafetensorsFile.open(file);
      try {
        for (const name of opened.entries.keys()) await opened.readRaw(name);
      } finally {
        await opened.close();
      }
    });
  });
});

const indexBytes = jsonText(
  fc.oneof(
    fc.record({ metadata: hostileJson, weight_map: fc.dictionary(fc.string({ maxLength: 40 }), fc.oneof(fc.constantFrom('model.safetensors', 'missing.safetensors', '../x.safetensors', '/etc/passwd'), hostileJson), { maxKeys: 5 }) }, { requiredKeys: [] }),
    hostileJson,
  ),
);

surface('index', 'fuzz: sharded index', async () => {
  const write = surfaceFolder('index', 'model.safetensors.index.json', ['model.safetensors']);
  await fuzzSurface('index', indexBytes, async (bytes) => {
    const folder = write(bytes);
    await expectCleanOutcome(path.join(folder, 'model.safetensors.index.json'), async () => (await openWeights(folder)).close());
  });
});

/** The valid config with some keys replaced by hostile values. */
function configBytes(validConfig: () => Record<string, unknown>): fc.Arbitrary<Uint8Array> {
  const keys = ['architectures', 'model_type', 'hidden_size', 'num_hidden_layers', 'num_local_experts', 'num_experts_per_tok', 'num_attention_heads', 'num_key_value_heads', 'head_dim', 'vocab_size', 'intermediate_size', 'rope_theta', 'rope_scaling', 'rms_norm_eps', 'tie_word_embeddings', 'hidden_act', 'moe_studio'];
  return jsonText(
    fc.oneof(
      { weight: 5, arbitrary: fc.dictionary(fc.constantFrom(...keys), fc.oneof(hostileJson, fc.array(fc.constantFrom('constructor', '__proto__', 'toString', 'MixtralForCausalLM')))).map((changes) => ({ ...validConfig(), ...changes })) },
      { weight: 1, arbitrary: hostileJson },
    ),
  );
}

surface('config', 'fuzz: config.json', async () => {
  const write = surfaceFolder('config', 'config.json');
  await fuzzSurface('config', configBytes(() => validConfig), async (bytes) => {
    const folder = write(bytes);
    await expectCleanOutcome(path.join(folder, 'config.json'), async () => (await loadCheckpoint(folder)).weights.close());
  });
});

/**
 * tokenizer.json with parts replaced. Split patterns are drawn from a fixed list of safe ones:
 * a catastrophically backtracking pattern hangs the tokenizer synchronously, which no in-process
 * deadline can interrupt (see the regression test in test/unit/checkpoint/hostileInput.test.ts).
 */
surface('tokenizer', 'fuzz: tokenizer.json', async () => {
  const parts = ['model', 'normalizer', 'pre_tokenizer', 'decoder', 'post_processor', 'added_tokens', 'truncation', 'padding'];
  const inputs = jsonText(
    fc.oneof(
      { weight: 5, arbitrary: fc.dictionary(fc.constantFrom(...parts), fc.oneof(hostileJson, fc.record({ type: fc.constantFrom('BPE', 'WordPiece', 'Unigram', 'ByteLevel', 'Metaspace', 'Sequence', 'Split', 'NFC', 'Lowercase', 'constructor'), vocab: hostileJson, merges: hostileJson, pattern: fc.record({ Regex: fc.constantFrom('\\s+', '[a-z]+', '.', '(') }), pretokenizers: hostileJson }, { requiredKeys: ['type'] }))).map((changes) => ({ ...validTokenizer, ...changes })) },
      { weight: 1, arbitrary: hostileJson },
    ),
  );
  const write = surfaceFolder('tokenizer', 'tokenizer.json');
  await fuzzSurface('tokenizer', inputs, async (bytes) => {
    const folder = write(bytes);
    await expectCleanOutcome(path.join(folder, 'tokenizer.json'), async () => {
      const checkpoint = await loadCheckpoint(folder);
      try {
        checkpoint.tokenizer.encode('Hello world, 123 ünïcode');
      } finally {
        await checkpoint.weights.close();
      }
    });
  });
});
