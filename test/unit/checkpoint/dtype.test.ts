import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  bf16ToFloat32,
  decodeToFloat32,
  encodeFloat32,
  f16ToFloat32,
  float32ToBf16,
  float32ToF16,
} from '../../../server/src/checkpoint/dtype';

function fromBits(...words: number[]): Float32Array {
  return new Float32Array(new Uint32Array(words).buffer);
}

test('bf16 encoding rounds to nearest, ties to even, and keeps specials', () => {
  const input = fromBits(
    0x3f800000, // 1.0
    0xc0000000, // -2.0
    0x3f808000, // exactly halfway between bf16 0x3f80 and 0x3f81: even is 0x3f80
    0x3f818000, // halfway between 0x3f81 and 0x3f82: even is 0x3f82
    0x3f808001, // just above halfway: up
    0x7f800000, // +inf
    0x7f7fffff, // largest float rounds past bf16's largest to +inf
    0x7fc00000, // NaN
    0xff800001, // a signalling NaN must not round into infinity
  );
  assert.deepEqual([...float32ToBf16(input)], [0x3f80, 0xc000, 0x3f80, 0x3f82, 0x3f81, 0x7f80, 0x7f80, 0x7fc0, 0xffc0]);
});

test('bf16 decoding is the top half of an fp32', () => {
  const decoded = bf16ToFloat32(new Uint16Array([0x4049, 0xbf80, 0x0000, 0x8000, 0xff80]));
  assert.deepEqual([...decoded], [3.140625, -1, 0, -0, -Infinity]);
  assert.ok(Object.is(decoded[3], -0));
});

test('f16 encoding handles normals, subnormals, overflow and ties', () => {
  const input = new Float32Array([1, -2, 0.1, 1 / 3, 65504, 65520, 2 ** -14, 2 ** -24, 2 ** -25, 3 * 2 ** -26, NaN, -Infinity]);
  assert.deepEqual(
    [...float32ToF16(input)],
    [0x3c00, 0xc000, 0x2e66, 0x3555, 0x7bff, 0x7c00, 0x0400, 0x0001, 0x0000, 0x0001, 0x7e00, 0xfc00],
  );
});

test('f16 decoding matches hand-computed values', () => {
  const decoded = f16ToFloat32(new Uint16Array([0x3555, 0x0001, 0x7bff, 0xfc00, 0x3c01, 0x8400]));
  assert.deepEqual([...decoded], [0.333251953125, 2 ** -24, 65504, -Infinity, 1 + 2 ** -10, -(2 ** -14)]);
  assert.ok(Number.isNaN(f16ToFloat32(new Uint16Array([0x7e00]))[0]));
});

test('every f16 value survives a decode-encode round trip', () => {
  const all = new Uint16Array(65536).map((_, i) => i);
  const back = float32ToF16(f16ToFloat32(all));
  for (let bits = 0; bits < 65536; bits++) {
    const isNaN = (bits & 0x7c00) === 0x7c00 && (bits & 0x3ff) !== 0;
    if (!isNaN) assert.equal(back[bits], bits, `f16 0x${bits.toString(16)}`);
  }
});

test('encodeFloat32 and decodeToFloat32 agree for each compute dtype', () => {
  const values = new Float32Array([0.5, -1.25, 3, 1e-3]);
  for (const dtype of ['F32', 'F16', 'BF16'] as const) {
    const bytes = encodeFloat32(values, dtype);
    assert.equal(bytes.byteLength, values.length * (dtype === 'F32' ? 4 : 2));
    const decoded = decodeToFloat32(bytes.slice(), dtype);
    decoded.forEach((value, i) => assert.ok(Math.abs(value - values[i]) <= Math.abs(values[i]) * 2 ** -8, `${dtype} ${i}`));
  }
});
