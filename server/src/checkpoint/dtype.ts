/**
 * Element types of safetensors files and the conversions between the three we compute in
 * (F32, F16, BF16) and fp32.
 */

import { endianness } from 'node:os';
import type { DType } from './modelSpec';

/** Every dtype the safetensors format defines; only F32, F16 and BF16 can be computed with. */
export type StoredDType =
  | DType
  | 'F64'
  | 'F8_E4M3'
  | 'F8_E5M2'
  | 'I64'
  | 'I32'
  | 'I16'
  | 'I8'
  | 'U64'
  | 'U32'
  | 'U16'
  | 'U8'
  | 'BOOL';

const BYTES_PER_ELEMENT: Record<StoredDType, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  F8_E4M3: 1,
  F8_E5M2: 1,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
};

export const COMPUTE_DTYPES: readonly DType[] = ['F32', 'F16', 'BF16'];

export function isStoredDType(value: string): value is StoredDType {
  return Object.prototype.hasOwnProperty.call(BYTES_PER_ELEMENT, value);
}

export function isComputeDType(value: string): value is DType {
  return (COMPUTE_DTYPES as readonly string[]).includes(value);
}

export function bytesPerElement(dtype: StoredDType): number {
  return BYTES_PER_ELEMENT[dtype];
}

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((count, dim) => count * dim, 1);
}

// Typed-array views below reinterpret file bytes in host order, and safetensors is little-endian.
if (endianness() !== 'LE') {
  throw new Error('MoE Studio reads safetensors through typed arrays and needs a little-endian host.');
}

/** bf16 is the top half of an fp32, so widening is a 16-bit shift. */
export function bf16ToFloat32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  widenBf16Into(bits, out);
  return out;
}

/** Widens `bits` into the first `bits.length` values of `target` (a buffer reused tensor after tensor). */
export function widenBf16Into(bits: Uint16Array, target: Float32Array): void {
  if (target.length < bits.length) throw new Error(`widenBf16Into: ${bits.length} values into ${target.length}`);
  const words = new Int32Array(target.buffer, target.byteOffset, bits.length);
  for (let i = 0, n = bits.length; i < n; i++) words[i] = bits[i] << 16;
}

// A 64K-entry table makes f16 widening one lookup per element; it costs 256 KiB, built on first use.
let f16Table: Float32Array | undefined;

function halfBitsToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

export function f16ToFloat32(bits: Uint16Array): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = halfBitsToFloat(h);
  }
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = f16Table[bits[i]];
  return out;
}

/** Round-to-nearest-even, as torch's `.to(torch.bfloat16)` does; NaN stays a quiet NaN. */
export function float32ToBf16(values: Float32Array): Uint16Array {
  const words = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const w = words[i];
    if ((w & 0x7f800000) === 0x7f800000 && (w & 0x007fffff) !== 0) {
      out[i] = (w >>> 16) | 0x0040;
      continue;
    }
    const roundingBias = 0x7fff + ((w >>> 16) & 1);
    out[i] = ((w + roundingBias) >>> 16) & 0xffff;
  }
  return out;
}

/** Round-to-nearest-even with subnormals, overflow to infinity and NaN kept. */
export function float32ToF16(values: Float32Array): Uint16Array {
  const words = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = floatBitsToHalf(words[i]);
  return out;
}

function floatBitsToHalf(w: number): number {
  const sign = (w >>> 16) & 0x8000;
  const exponent = (w >>> 23) & 0xff;
  let mantissa = w & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0);
  // Re-bias from 127 to 15.
  let halfExponent = exponent - 127 + 15;
  if (halfExponent >= 0x1f) return sign | 0x7c00;
  if (halfExponent <= 0) {
    // Subnormal (or zero) in f16: shift the mantissa, with its implicit leading 1, into place.
    if (halfExponent < -10) return sign;
    mantissa |= 0x800000;
    const shift = 14 - halfExponent;
    let half = mantissa >>> shift;
    const remainder = mantissa & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (remainder > halfway || (remainder === halfway && (half & 1))) half++;
    return sign | half;
  }
  let half = (halfExponent << 10) | (mantissa >>> 13);
  const remainder = mantissa & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent, up to infinity.
  if (remainder > 0x1000 || (remainder === 0x1000 && (half & 1))) half++;
  return sign | half;
}

/** Widen stored bytes of a compute dtype to fp32. `bytes` must start on an aligned offset. */
export function decodeToFloat32(bytes: Uint8Array, dtype: DType): Float32Array {
  if (dtype === 'F32') return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  const bits = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
  return dtype === 'BF16' ? bf16ToFloat32(bits) : f16ToFloat32(bits);
}

/** Narrow fp32 values to the bytes of `dtype`, ready to write. */
export function encodeFloat32(values: Float32Array, dtype: DType): Uint8Array {
  if (dtype === 'F32') return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const bits = dtype === 'BF16' ? float32ToBf16(values) : float32ToF16(values);
  return new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength);
}
