/**
 * MXFP4, as GPT-OSS checkpoints store their experts (transformers integrations/mxfp4.py,
 * `quantization_config.quant_method: "mxfp4"`): a weight W [E, out, in] is `<name>_blocks` U8
 * [E, out, in/32, 16] and `<name>_scales` U8 [E, out, in/32]. Each block of 32 consecutive inputs is
 * 16 bytes, two E2M1 codes per byte, the low nibble first (element 2b), the high nibble second (2b + 1),
 * and one E8M0 scale byte s shared by the block: value = FP4[code] · 2^(s - 127).
 *
 * transformers dequantizes to [E, out, in] and transposes to its [E, in, out] parameter; the stored [out, in]
 * rows are exactly HF's Linear layout, so an expert's rows here are what the runtime's Gemm reads as is.
 */

/** E2M1 codes 0..15: sign bit 3, then 0, 0.5, 1, 1.5, 2, 3, 4, 6. */
export const FP4_VALUES: readonly number[] = [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0, -0.5, -1, -1.5, -2, -3, -4, -6];
export const MXFP4_BLOCK = 32;
export const MXFP4_BLOCK_BYTES = 16;
export const E8M0_BIAS = 127;

export function mxfp4BlocksName(weight: string): string {
  return `${weight}_blocks`;
}

export function mxfp4ScalesName(weight: string): string {
  return `${weight}_scales`;
}

/** Stored shapes of an MXFP4 weight of logical [experts, out, in] (in a multiple of 32). */
export function mxfp4Shapes(experts: number, out: number, inputs: number): { blocks: number[]; scales: number[] } {
  const groups = inputs / MXFP4_BLOCK;
  return { blocks: [experts, out, groups, MXFP4_BLOCK_BYTES], scales: [experts, out, groups] };
}

/**
 * Rows of a weight, [rows, groups·32] fp32, from their blocks (rows·groups·16 bytes) and scales (rows·groups bytes).
 * `rowStep` picks every n-th row from `firstRow` (GPT-OSS interleaves gate and up rows).
 */
export function dequantizeMxfp4Rows(blocks: Uint8Array, scales: Uint8Array, groups: number, firstRow = 0, rowStep = 1): Float32Array {
  const totalRows = scales.length / groups;
  const rows = Math.ceil((totalRows - firstRow) / rowStep);
  const width = groups * MXFP4_BLOCK;
  const out = new Float32Array(rows * width);
  // Typed tables (a byte's two codes, a scale byte's power of two) instead of indexing FP4_VALUES and calling
  // Math.pow per block: one GPT-OSS-20B expert's gate and up (2 × 8.3 M weights) 330 -> 160-210 ms here.
  for (let r = 0; r < rows; r++) {
    const source = firstRow + r * rowStep;
    for (let g = 0; g < groups; g++) {
      const scale = POWERS_OF_TWO[scales[source * groups + g]];
      const blockStart = (source * groups + g) * MXFP4_BLOCK_BYTES;
      const outStart = r * width + g * MXFP4_BLOCK;
      for (let b = 0; b < MXFP4_BLOCK_BYTES; b++) {
        const byte = blocks[blockStart + b];
        out[outStart + 2 * b] = LOW_CODE[byte] * scale;
        out[outStart + 2 * b + 1] = HIGH_CODE[byte] * scale;
      }
    }
  }
  return out;
}

const LOW_CODE = Float32Array.from({ length: 256 }, (_, byte) => FP4_VALUES[byte & 0x0f]);
const HIGH_CODE = Float32Array.from({ length: 256 }, (_, byte) => FP4_VALUES[byte >> 4]);
const POWERS_OF_TWO = Float64Array.from({ length: 256 }, (_, s) => Math.pow(2, s - E8M0_BIAS));

/**
 * Rows [rows, groups·32] fp32 -> MXFP4 blocks and scales, for merged experts (export re-encodes them; the runtime
 * evaluates the same round trip, `mxfp4RoundTrip`). Per block of 32: the scale is the smallest power of two with
 * max|v| / scale <= 6 (triton_kernels' downcast_to_mxfp with its default round-up of the scale: no value saturates),
 * each value the nearest E2M1 code of v / scale, ties to the even code. An all-zero block gets scale byte 0.
 */
export function encodeMxfp4Rows(values: Float32Array, rows: number, groups: number): { blocks: Uint8Array; scales: Uint8Array } {
  const blocks = new Uint8Array(rows * groups * MXFP4_BLOCK_BYTES);
  const scales = new Uint8Array(rows * groups);
  for (let block = 0; block < rows * groups; block++) {
    const start = block * MXFP4_BLOCK;
    let max = 0;
    for (let i = 0; i < MXFP4_BLOCK; i++) max = Math.max(max, Math.abs(values[start + i]));
    if (max === 0 || !Number.isFinite(max)) {
      scales[block] = max === 0 ? 0 : 255;
      continue;
    }
    const exponent = Math.min(127, Math.max(-127, Math.ceil(Math.log2(max / 6))));
    // log2 rounding: make sure max / scale really is <= 6 (and the next smaller power would not do).
    let e = exponent;
    while (e < 127 && max / Math.pow(2, e) > 6) e++;
    while (e > -127 && max / Math.pow(2, e - 1) <= 6) e--;
    scales[block] = e + E8M0_BIAS;
    const inverse = Math.pow(2, -e);
    for (let b = 0; b < MXFP4_BLOCK_BYTES; b++) {
      const low = e2m1Code(values[start + 2 * b] * inverse);
      const high = e2m1Code(values[start + 2 * b + 1] * inverse);
      blocks[block * MXFP4_BLOCK_BYTES + b] = low | (high << 4);
    }
  }
  return { blocks, scales };
}

/** What MXFP4 storage makes of rows of weights: encode, then decode (the merged experts the export writes). */
export function mxfp4RoundTrip(values: Float32Array, rows: number, inputs: number): Float32Array {
  const groups = inputs / MXFP4_BLOCK;
  const { blocks, scales } = encodeMxfp4Rows(values, rows, groups);
  return dequantizeMxfp4Rows(blocks, scales, groups);
}

/** Midpoints between E2M1 magnitudes 0, 0.5, 1, 1.5, 2, 3, 4, 6; a tie goes to the even code (0, 1, 2, 4). */
const E2M1_MIDPOINTS = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5];

function e2m1Code(v: number): number {
  const magnitude = Math.abs(v);
  let code = 0;
  while (code < 7 && (magnitude > E2M1_MIDPOINTS[code] || (magnitude === E2M1_MIDPOINTS[code] && code % 2 === 1))) code++;
  return (v < 0 || Object.is(v, -0) ? 8 : 0) | code;
}
