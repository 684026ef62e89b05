/**
 * Regression tests for each class of hostile or broken checkpoint found by fuzzing (issue #15):
 * every one is a CheckpointError with a bounded message, quickly, instead of a raw TypeError,
 * RangeError, ENOTDIR, an out-of-memory abort or a hang.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { CheckpointError } from '../../../server/src/checkpoint/errors';
import { loadCheckpoint } from '../../../server/src/checkpoint/loadCheckpoint';
import { hasNestedQuantifier } from '../../../server/src/checkpoint/tokenizerPatterns';
import { isUserError, MAX_MESSAGE_CHARS, UserError } from '../../../server/src/errors';
import { deserializeError, serializeError } from '../../../server/src/runtime/runtimeProtocol';
import { writeRandomCheckpoint } from '../../support/randomCheckpoint';

let root: string;
let valid: string;
let counter = 0;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'moe-hostile-'));
  valid = join(root, 'valid');
  await writeRandomCheckpoint(valid, { architecture: 'MixtralForCausalLM', numLayers: 2, numExperts: 4, topK: 2, hiddenSize: 8, numHeads: 2, numKvHeads: 1, expertIntermediateSize: 8 });
});
after(() => rm(root, { recursive: true, force: true }));

/** A copy of the valid checkpoint with some files replaced (or, with `null`, removed). */
async function variant(files: Record<string, string | Uint8Array | null>): Promise<string> {
  const folder = join(root, `case-${counter++}`);
  await mkdir(folder);
  for (const name of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']) {
    if (!(name in files)) await writeFile(join(folder, name), await readFile(join(valid, name)));
  }
  for (const [name, contents] of Object.entries(files)) if (contents !== null) await writeFile(join(folder, name), contents);
  return folder;
}

async function config(changes: Record<string, unknown>): Promise<string> {
  return JSON.stringify({ ...JSON.parse(await readFile(join(valid, 'config.json'), 'utf8')), ...changes });
}

/** Loading fails with a CheckpointError of `code` whose message matches, within `withinMs`. */
async function assertRefused(folder: string, code: string, pattern: RegExp, withinMs = 2_000): Promise<void> {
  const started = Date.now();
  await assert.rejects(loadCheckpoint(folder), (error: unknown) => {
    assert.ok(error instanceof CheckpointError, error instanceof Error ? error.stack : String(error));
    assert.equal(error.code, code, error.message);
    assert.match(error.message, pattern);
    assert.ok(error.message.length <= MAX_MESSAGE_CHARS + 1, `message of ${error.message.length} characters`);
    return true;
  });
  assert.ok(Date.now() - started < withinMs, `took ${Date.now() - started} ms`);
}

const deep = (depth: number) => JSON.parse('['.repeat(depth) + ']'.repeat(depth)) as unknown;

function safetensorsWithHeader(headerText: string): Uint8Array {
  const json = new TextEncoder().encode(headerText);
  const bytes = new Uint8Array(8 + json.length);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(json.length), true);
  bytes.set(json, 8);
  return bytes;
}

test('architectures named like Object.prototype members are unsupported, not a crash', async () => {
  for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty']) {
    await assertRefused(await variant({ 'config.json': await config({ architectures: [name] }) }), 'unsupportedArchitecture', new RegExp(`${name}.*not supported`));
  }
});

test('20,000-deep nesting in config.json, a safetensors header or an index is a clean error', async () => {
  await assertRefused(await variant({ 'config.json': `{"architectures":["MixtralForCausalLM"],"hidden_size":${'['.repeat(20_000)}${']'.repeat(20_000)}}` }), 'invalidConfig', /nested more than 256 levels/);
  const shape = `{"w":{"dtype":"F32","shape":${'['.repeat(20_000)}${']'.repeat(20_000)},"data_offsets":[0,0]}}`;
  await assertRefused(await variant({ 'model.safetensors': safetensorsWithHeader(shape) }), 'invalidSafetensors', /model\.safetensors.*nested more than 256/);
  const index = `{"weight_map":{"w":${'['.repeat(20_000)}${']'.repeat(20_000)}}}`;
  await assertRefused(await variant({ 'model.safetensors.index.json': index }), 'invalidIndex', /index\.json.*nested more than 256/);
  // A deep value under the depth limit is quoted in a bounded form, not JSON.stringify'd.
  await assertRefused(await variant({ 'config.json': await config({ hidden_size: deep(200) }) }), 'invalidConfig', /"hidden_size" should be a positive integer, got \[\[\[/);
});

test('a 200,000-entry shape gives a short message', async () => {
  const shape = new Array(200_000).fill(1);
  const header = JSON.stringify({ w: { dtype: 'F32', shape, data_offsets: [0, 8] } });
  await assertRefused(await variant({ 'model.safetensors': safetensorsWithHeader(header) }), 'invalidSafetensors', /tensor w/);
});

test('a folder named model.safetensors, a device and a FIFO are refused without hanging', async () => {
  const folder = await variant({ 'model.safetensors': null });
  await mkdir(join(folder, 'model.safetensors'));
  await assertRefused(folder, 'invalidSafetensors', /not a regular file/);
  await assertRefused('/dev/zero', 'notFound', /neither a model folder nor a file/);
  const fifoFolder = await variant({ 'model.safetensors': null });
  execFileSync('mkfifo', [join(fifoFolder, 'model.safetensors')]);
  await assertRefused(fifoFolder, 'invalidSafetensors', /not a regular file/);
  await unlink(join(fifoFolder, 'model.safetensors'));
  await writeFile(join(fifoFolder, 'model.safetensors'), await readFile(join(valid, 'model.safetensors')));
  await unlink(join(fifoFolder, 'config.json'));
  execFileSync('mkfifo', [join(fifoFolder, 'config.json')]);
  await assertRefused(fifoFolder, 'invalidConfig', /config\.json cannot be read: it is not a regular file/);
});

test('absurd sizes in config.json are refused before anything is allocated for them', async () => {
  await assertRefused(await variant({ 'config.json': await config({ num_hidden_layers: 1e9 }) }), 'invalidConfig', /"num_hidden_layers" is 1000000000, over the limit of 1024/, 1_000);
  await assertRefused(await variant({ 'config.json': await config({ num_local_experts: 1e9 }) }), 'invalidConfig', /"num_local_experts" is 1000000000, over the limit/, 1_000);
  // Within the limits but far more than the checkpoint holds: refused by counting, not by listing.
  await assertRefused(await variant({ 'config.json': await config({ num_hidden_layers: 1000, num_local_experts: 4000 }) }), 'missingTensor', /declares 1000 layers .* holds only \d+ tensors/, 1_000);
});

test('a tokenizer pattern that backtracks catastrophically is refused at load', async () => {
  const tokenizer = JSON.parse(await readFile(join(valid, 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
  tokenizer.pre_tokenizer = { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: '(a+)+$' }, behavior: 'Isolated', invert: false }, tokenizer.pre_tokenizer] };
  await assertRefused(await variant({ 'tokenizer.json': JSON.stringify(tokenizer) }), 'invalidTokenizer', /\(a\+\)\+\$.*exponential time/);
  // The published patterns pass (GPT-2 and Llama 3 / Qwen).
  assert.equal(hasNestedQuantifier("'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"), false);
  assert.equal(hasNestedQuantifier("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"), false);
  assert.equal(hasNestedQuantifier('(\\w+\\s?)*$'), true);
});

test('a user error keeps its kind across the worker thread; an internal one keeps its stack', () => {
  const serialized = serializeError(new CheckpointError('invalidSafetensors', 'x.safetensors is not valid'));
  assert.equal(serialized.stack, undefined, "the worker's stack is not carried for a user error");
  const revived = deserializeError(structuredClone(serialized));
  assert.ok(isUserError(revived));
  assert.equal(revived.message, 'x.safetensors is not valid');
  assert.equal(revived.name, 'CheckpointError');
  const internal = deserializeError(structuredClone(serializeError(new TypeError('boom'))));
  assert.equal(isUserError(internal), false);
  assert.match(internal.stack ?? '', /hostileInput\.test\.ts/);
  assert.ok(new UserError('x'.repeat(10 * MAX_MESSAGE_CHARS)).message.length <= MAX_MESSAGE_CHARS + 1);
});
