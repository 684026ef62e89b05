import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { encodeFloat32 } from '../../../server/src/checkpoint/dtype';
import { CheckpointError } from '../../../server/src/checkpoint/errors';
import { MAX_HEADER_BYTES, SafetensorsFile } from '../../../server/src/checkpoint/safetensors';
import { encodeSafetensorsHeader, writeSafetensors } from '../../../server/src/checkpoint/safetensorsWriter';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'moe-safetensors-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A file with exactly this header text and data, bypassing the writer's own checks. */
async function writeRaw(name: string, header: string | object, data = new Uint8Array(0), claimedLength?: bigint): Promise<string> {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const bytes = new Uint8Array(8 + json.byteLength + data.byteLength);
  new DataView(bytes.buffer).setBigUint64(0, claimedLength ?? BigInt(json.byteLength), true);
  bytes.set(json, 8);
  bytes.set(data, 8 + json.byteLength);
  const path = join(dir, name);
  await writeFile(path, bytes);
  return path;
}

async function assertInvalid(path: string, pattern: RegExp): Promise<void> {
  await assert.rejects(SafetensorsFile.open(path), (error: unknown) => {
    assert.ok(error instanceof CheckpointError, String(error));
    assert.equal(error.code, 'invalidSafetensors');
    assert.ok(error.message.includes(path), `message names the file: ${error.message}`);
    assert.match(error.message, pattern);
    return true;
  });
}

test('writer and reader round-trip every compute dtype, and other dtypes as raw bytes', async () => {
  const values = new Float32Array([1, -0.5, 0.25, 3, -7, 0.125]);
  const ints = new Uint8Array(new BigInt64Array([1n, -2n, 3n]).buffer);
  const path = join(dir, 'roundtrip.safetensors');
  const tensors = [
    { name: 'a.f32', dtype: 'F32' as const, shape: [2, 3] },
    { name: 'b.f16', dtype: 'F16' as const, shape: [6] },
    { name: 'c.bf16', dtype: 'BF16' as const, shape: [3, 2] },
    { name: 'd.i64', dtype: 'I64' as const, shape: [3] },
    { name: 'e.empty', dtype: 'F32' as const, shape: [0, 4] },
  ];
  const bytesFor: Record<string, Uint8Array> = {
    'a.f32': encodeFloat32(values, 'F32'),
    'b.f16': encodeFloat32(values, 'F16'),
    'c.bf16': encodeFloat32(values, 'BF16'),
    'd.i64': ints,
    'e.empty': new Uint8Array(0),
  };
  await writeSafetensors(path, tensors, (tensor) => bytesFor[tensor.name], { metadata: { note: 'test' } });

  const raw = await readFile(path);
  const headerLength = Number(raw.readBigUInt64LE(0));
  assert.equal((8 + headerLength) % 8, 0, 'data section starts 8-aligned');
  assert.match(raw.subarray(8, 8 + headerLength).toString('utf8'), /"format":"pt"/);

  const file = await SafetensorsFile.open(path);
  try {
    assert.deepEqual(file.metadata, { note: 'test', format: 'pt' });
    assert.deepEqual([...file.entries.keys()], tensors.map((t) => t.name));
    for (const name of ['a.f32', 'b.f16', 'c.bf16']) assert.deepEqual([...(await file.readFloat32(name))], [...values]);
    assert.deepEqual(file.entry('c.bf16').shape, [3, 2]);
    assert.deepEqual(await file.readRaw('d.i64'), ints);
    assert.equal((await file.readFloat32('e.empty')).length, 0);
    await assert.rejects(file.readFloat32('d.i64'), /d\.i64 is I64; only F32, F16 and BF16/);
    await assert.rejects(file.readRaw('nope'), /has no tensor named nope/);
  } finally {
    await file.close();
  }
});

test('the writer refuses bytes of the wrong length', async () => {
  await assert.rejects(
    writeSafetensors(join(dir, 'short.safetensors'), [{ name: 'w', dtype: 'F32', shape: [4] }], () => new Uint8Array(12)),
    /w \(F32 \[4\]\) needs 16 bytes, got 12/,
  );
});

test('header padding is spaces', () => {
  const header = encodeSafetensorsHeader([{ name: 'x', dtype: 'F16', shape: [1] }]);
  assert.equal(header.byteLength % 8, 0);
  const text = new TextDecoder().decode(header.subarray(8));
  assert.equal(text.trimEnd(), JSON.stringify({ __metadata__: { format: 'pt' }, x: { dtype: 'F16', shape: [1], data_offsets: [0, 2] } }));
});

test('a file shorter than the length prefix is refused', async () => {
  const path = join(dir, 'tiny.safetensors');
  await writeFile(path, new Uint8Array(5));
  await assertInvalid(path, /5 bytes long, shorter than the 8-byte header length/);
});

test('a truncated file (header longer than the file) is refused', async () => {
  const path = await writeRaw('truncated-header.safetensors', { w: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4));
  await truncate(path, 20);
  await assertInvalid(path, /header claims \d+ bytes but the file has only 12 after the length/);
});

test('a file truncated inside its data section is refused', async () => {
  const path = join(dir, 'truncated-data.safetensors');
  await writeSafetensors(path, [{ name: 'w', dtype: 'F32', shape: [8] }], () => new Uint8Array(32));
  const { size } = await stat(path);
  await truncate(path, size - 4);
  await assertInvalid(path, /tensor w has data_offsets \[0, 32\] beyond the 28-byte data section \(truncated\?\)/);
});

test('a header length past the end of the file is refused', async () => {
  const path = await writeRaw('long-header.safetensors', '{}', new Uint8Array(0), 1000n);
  await assertInvalid(path, /header claims 1000 bytes but the file has only 2/);
});

test('a header over the size limit is refused before it is read', async () => {
  const path = await writeRaw('huge-header.safetensors', '{}', new Uint8Array(0), BigInt(MAX_HEADER_BYTES) + 1n);
  await assertInvalid(path, /over the 104857600-byte limit/);
});

test('a header that is not JSON is refused', async () => {
  const path = await writeRaw('bad-json.safetensors', '{"w": {"dtype": "F32",');
  await assertInvalid(path, /header is not valid UTF-8 JSON/);
});

test('a header that is JSON but not an object is refused', async () => {
  await assertInvalid(await writeRaw('array.safetensors', '[1,2]'), /header is not a JSON object/);
});

test('overlapping tensors are refused', async () => {
  const header = {
    a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
    b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
  };
  await assertInvalid(await writeRaw('overlap.safetensors', header, new Uint8Array(12)), /tensors a and b overlap/);
});

test('offsets outside the data section are refused', async () => {
  const header = { a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } };
  await assertInvalid(await writeRaw('out-of-range.safetensors', header, new Uint8Array(8)), /\[0, 16\] beyond the 8-byte data section/);
});

test('offsets with begin after end are refused', async () => {
  const header = { a: { dtype: 'F32', shape: [0], data_offsets: [8, 4] } };
  await assertInvalid(await writeRaw('reversed.safetensors', header, new Uint8Array(8)), /begin after end/);
});

test('a byte range that does not match dtype and shape is refused', async () => {
  const header = { a: { dtype: 'BF16', shape: [2, 3], data_offsets: [0, 8] } };
  await assertInvalid(
    await writeRaw('mismatch.safetensors', header, new Uint8Array(8)),
    /tensor a is BF16 \[2,3\], which needs 12 bytes, but data_offsets \[0, 8\] cover 8/,
  );
});

test('an unknown dtype is refused', async () => {
  const header = { a: { dtype: 'F12', shape: [1], data_offsets: [0, 2] } };
  await assertInvalid(await writeRaw('dtype.safetensors', header, new Uint8Array(2)), /tensor a has unknown dtype "F12"/);
});

test('a malformed shape is refused', async () => {
  const header = { a: { dtype: 'F32', shape: [2, -1], data_offsets: [0, 8] } };
  await assertInvalid(await writeRaw('shape.safetensors', header, new Uint8Array(8)), /tensor a has shape \[2,-1\]/);
});

test('non-string metadata is refused', async () => {
  await assertInvalid(await writeRaw('meta.safetensors', { __metadata__: { format: 1 } }), /__metadata__\.format is not a string/);
});
