/**
 * Block-scaled FP8 encoding as DeepSeek's checkpoints are made: per block, scale_inv = max|W| / 448 (stored
 * F32 or BF16), codes = e4m3(W / scale_inv). Tests write checkpoints with it; decoding is the loader's job.
 */

import { decodeToFloat32, encodeFloat32 } from '../../server/src/checkpoint/dtype';
import { e4m3ToFloat32, float32ToE4m3 } from '../../server/src/checkpoint/fp8Weights';

export interface Fp8Encoded {
  codes: Uint8Array;
  scaleBytes: Uint8Array;
  scaleShape: [number, number];
  /** What the loader must decode: codes · scale, in fp32. */
  decoded: Float32Array;
}

export function encodeFp8Blocks(values: Float32Array, rows: number, cols: number, [blockRows, blockCols]: [number, number], scaleDtype: 'F32' | 'BF16'): Fp8Encoded {
  const scaleShape: [number, number] = [Math.ceil(rows / blockRows), Math.ceil(cols / blockCols)];
  const rawScales = new Float32Array(scaleShape[0] * scaleShape[1]);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const s = Math.floor(r / blockRows) * scaleShape[1] + Math.floor(c / blockCols);
      rawScales[s] = Math.max(rawScales[s], Math.abs(values[r * cols + c]) / 448);
    }
  }
  for (let s = 0; s < rawScales.length; s++) if (rawScales[s] === 0) rawScales[s] = 1;
  const scaleBytes = encodeFloat32(rawScales, scaleDtype).slice();
  const scales = decodeToFloat32(scaleBytes, scaleDtype);
  const scaled = new Float32Array(values.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) scaled[r * cols + c] = values[r * cols + c] / scales[Math.floor(r / blockRows) * scaleShape[1] + Math.floor(c / blockCols)];
  const codes = float32ToE4m3(scaled);
  const decoded = e4m3ToFloat32(codes);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) decoded[r * cols + c] = Math.fround(decoded[r * cols + c] * scales[Math.floor(r / blockRows) * scaleShape[1] + Math.floor(c / blockCols)]);
  return { codes, scaleBytes, scaleShape, decoded };
}
