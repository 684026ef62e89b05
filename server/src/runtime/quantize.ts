/**
 * Symmetric per-output-channel int8 quantization of a projection weight, done in JS at build time, one
 * tensor at a time (the caller holds one tensor and its int8 copy, never a layer).
 *
 * For output channel o (row o of the HF [out, in] weight): scale_o = max_i |W[o, i]| / levels and
 * q[i, o] = round_half_even(W[o, i] / scale_o), so W[o, i] ~= q[i, o] * scale_o. The values come out
 * transposed, [in, out], because that is the layout onnxruntime's integer MatMuls take for B (with the
 * scales along B's columns). -128 is never used, so the range is symmetric and zero is exact. `levels` is
 * 127, or 63 (7 bits) on CPUs whose int8 kernel would overflow with 127 (int8Kernel.ts).
 *
 * A streamed int8 layer is quantized again each time it is loaded, so this is on the streaming path's
 * critical time (runtime README, "Loading a layer"). bf16 checkpoints are quantized straight from their
 * stored bits (`quantizeBf16PerOutputChannel`), without an fp32 copy of the tensor: the same values,
 * bit for bit, as widening first.
 */
import { widenBf16Into } from '../checkpoint/dtype';

export interface QuantizedWeight {
  /** [in, out], row-major: the transpose of the HF layout. */
  values: Int8Array;
  /** [out]: one scale per output channel. An all-zero row gets scale 1 (its values are all 0). */
  scales: Float32Array;
}

export function quantizePerOutputChannel(weight: Float32Array, outDim: number, inDim: number, levels = 127): QuantizedWeight {
  if (weight.length !== outDim * inDim) throw new Error(`quantize: ${weight.length} values for a [${outDim}, ${inDim}] weight`);
  const scales = new Float32Array(outDim);
  for (let o = 0; o < outDim; o++) {
    let max = 0;
    for (let i = o * inDim, end = i + inDim; i < end; i++) max = Math.max(max, Math.abs(weight[i]));
    scales[o] = scaleFor(max, levels);
  }
  const values = new Int8Array(outDim * inDim);
  for (let o = 0; o < outDim; o += ROWS) quantizeRows(weight, o * inDim, values, o, Math.min(ROWS, outDim - o), outDim, inDim, scales);
  return { values, scales };
}

/** The same as widening `bits` (bf16, [out, in]) to fp32 and quantizing that, without the fp32 copy. */
export function quantizeBf16PerOutputChannel(bits: Uint16Array, outDim: number, inDim: number, levels = 127): QuantizedWeight {
  if (bits.length !== outDim * inDim) throw new Error(`quantize: ${bits.length} values for a [${outDim}, ${inDim}] weight`);
  const scales = new Float32Array(outDim);
  const word = new Int32Array(1);
  const float = new Float32Array(word.buffer);
  for (let o = 0; o < outDim; o++) {
    // |x| of a bf16 is its bits without the sign, and for finite values those order like the magnitudes.
    let max = 0;
    for (let i = o * inDim, end = i + inDim; i < end; i++) {
      const magnitude = bits[i] & 0x7fff;
      if (magnitude > max) max = magnitude;
    }
    word[0] = max << 16;
    scales[o] = scaleFor(float[0], levels);
  }
  const values = new Int8Array(outDim * inDim);
  // ROWS rows at a time are widened into a small buffer that stays in cache while they are transposed.
  const widened = new Float32Array(ROWS * inDim);
  for (let o = 0; o < outDim; o += ROWS) {
    const rows = Math.min(ROWS, outDim - o);
    widenBf16Into(bits.subarray(o * inDim, (o + rows) * inDim), widened);
    quantizeRows(widened, 0, values, o, rows, outDim, inDim, scales);
  }
  return { values, scales };
}

/**
 * Rows o..o+rows-1 of the weight (row-major from `offset` of `source`) into columns o.. of the transposed
 * values. Four rows make one 32-bit word of the output per input column: writing int8 values one at a
 * time at a stride of `outDim` was the cost (OLMoE's 2048 x 1024 expert weight: 10 ms this way against
 * 18-24 ms in blocks of 16 rows written byte by byte, and 33 ms row by row, same run).
 */
function quantizeRows(source: Float32Array, offset: number, values: Int8Array, o: number, rows: number, outDim: number, inDim: number, scales: Float32Array): void {
  if (rows === ROWS && outDim % 4 === 0) {
    const words = new Int32Array(values.buffer, values.byteOffset, values.length >> 2);
    const wordsPerColumn = outDim >> 2;
    const s0 = scales[o], s1 = scales[o + 1], s2 = scales[o + 2], s3 = scales[o + 3];
    for (let i = 0, a = offset, b = a + inDim, c = b + inDim, d = c + inDim, w = o >> 2; i < inDim; i++, a++, b++, c++, d++, w += wordsPerColumn) {
      // Divided by the float32 scale the kernel multiplies by, so dequantizing reproduces this rounding.
      const q0 = roundHalfEven(source[a] / s0), q1 = roundHalfEven(source[b] / s1), q2 = roundHalfEven(source[c] / s2), q3 = roundHalfEven(source[d] / s3);
      words[w] = (q0 & 0xff) | ((q1 & 0xff) << 8) | ((q2 & 0xff) << 16) | (q3 << 24);
    }
    return;
  }
  for (let i = 0; i < inDim; i++) {
    for (let r = 0; r < rows; r++) values[i * outDim + o + r] = roundHalfEven(source[offset + r * inDim + i] / scales[o + r]);
  }
}

/** Rows quantized together: one little-endian 32-bit word of int8 outputs. */
const ROWS = 4;

function scaleFor(maxAbs: number, levels: number): number {
  return maxAbs > 0 ? maxAbs / levels : 1;
}

/** W as the int8 kernels see it, back in the HF [out, in] layout (for tests and error reports). */
export function dequantize({ values, scales }: QuantizedWeight): Float32Array {
  const outDim = scales.length;
  const inDim = values.length / outDim;
  const weight = new Float32Array(values.length);
  for (let o = 0; o < outDim; o++) for (let i = 0; i < inDim; i++) weight[o * inDim + i] = values[i * outDim + o] * scales[o];
  return weight;
}

/**
 * Round to nearest, ties to even, as ONNX's QuantizeLinear does: adding and subtracting 1.5 * 2^52 leaves
 * float64's own rounding (ties to even) on the integer part. |x| <= levels by construction of the scale.
 */
function roundHalfEven(x: number): number {
  return x + 6755399441055744 - 6755399441055744;
}
