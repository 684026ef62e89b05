/**
 * Symmetric per-output-channel int8 quantization of a projection weight, done in JS at build time, one
 * tensor at a time (the caller holds one fp32 tensor and its int8 copy, never a layer).
 *
 * For output channel o (row o of the HF [out, in] weight): scale_o = max_i |W[o, i]| / 127 and
 * q[i, o] = round_half_even(W[o, i] / scale_o), so W[o, i] ~= q[i, o] * scale_o. The values come out
 * transposed, [in, out], because that is the layout onnxruntime's integer MatMuls take for B (with the
 * scales along B's columns). -128 is never used, so the range is symmetric and zero is exact.
 */
export interface QuantizedWeight {
  /** [in, out], row-major: the transpose of the HF layout. */
  values: Int8Array;
  /** [out]: one scale per output channel. An all-zero row gets scale 1 (its values are all 0). */
  scales: Float32Array;
}

export function quantizePerOutputChannel(weight: Float32Array, outDim: number, inDim: number): QuantizedWeight {
  if (weight.length !== outDim * inDim) throw new Error(`quantize: ${weight.length} values for a [${outDim}, ${inDim}] weight`);
  const values = new Int8Array(outDim * inDim);
  const scales = new Float32Array(outDim);
  for (let o = 0; o < outDim; o++) {
    let max = 0;
    for (let i = o * inDim, end = i + inDim; i < end; i++) max = Math.max(max, Math.abs(weight[i]));
    scales[o] = max > 0 ? max / 127 : 1;
  }
  // The transpose goes in blocks of output channels: a row at a time would write one byte per cache line
  // (33 ms for a 2048 x 1024 weight, against 10-16 ms in blocks of 16 here; 8 to 128 were no better), and
  // a layer of OLMoE has 192 such weights.
  for (let block = 0; block < outDim; block += TRANSPOSE_BLOCK) {
    const blockEnd = Math.min(outDim, block + TRANSPOSE_BLOCK);
    for (let i = 0; i < inDim; i++) {
      const target = i * outDim;
      // Divided by the float32 scale the kernel multiplies by, so dequantizing reproduces this rounding.
      for (let o = block; o < blockEnd; o++) values[target + o] = roundHalfEven(weight[o * inDim + i] / scales[o]);
    }
  }
  return { values, scales };
}

const TRANSPOSE_BLOCK = 16;

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
 * float64's own rounding (ties to even) on the integer part. |x| <= 127 by construction of the scale.
 */
function roundHalfEven(x: number): number {
  return x + 6755399441055744 - 6755399441055744;
}
