/**
 * FP8 (e4m3) weights with block scales, as DeepSeek-V3 and Kimi-K2 ship them (`quantization_config`:
 * `quant_method: "fp8"`, `fmt: "e4m3"`, `weight_block_size: [128, 128]`): a Linear's `weight` is
 * F8_E4M3 [out, in] and its `weight_scale_inv` (F32 or BF16) [ceil(out/128), ceil(in/128)] holds one
 * multiplier per 128 x 128 block, so W[r][c] = fp8(weight[r][c]) · scale_inv[r / 128][c / 128] (DeepSeek's
 * `weight_dequant`, transformers' FP8 dequantisation).
 *
 * The runtime computes in fp32 on the dequantised weights (transformers with `dequantize=True`); activations
 * are not quantised. Every FP8 weight's scale is checked at load, so a missing or misshapen scale is a
 * load error naming both tensors, never a wrong number later. Export copies both tensors byte for byte.
 */

import { basename } from 'node:path';
import { quoteValue } from '../errors';
import { CheckpointError } from './errors';
import type { TensorInfo, WeightSource } from './modelSpec';
import type { CheckpointWeights, UncomputableTensor } from './weightFiles';

export const SCALE_SUFFIX = '_scale_inv';

export interface Fp8BlockQuantization {
  /** [rows, columns] of one block. */
  blockSize: [number, number];
}

/** The config's FP8 block quantisation, or undefined when it declares none (or another method). */
export function fp8Quantization(config: Record<string, unknown>, file: string): Fp8BlockQuantization | undefined {
  const quantization = config.quantization_config;
  if (quantization === undefined || quantization === null || typeof quantization !== 'object') return undefined;
  const q = quantization as Record<string, unknown>;
  if (q.quant_method !== 'fp8') return undefined;
  const fail = (message: string): never => {
    throw new CheckpointError('invalidConfig', `${file}: "quantization_config" ${message}`, file);
  };
  if (q.fmt !== undefined && q.fmt !== 'e4m3') fail(`has "fmt": ${quoteValue(q.fmt)}; only "e4m3" FP8 weights are supported.`);
  const block = q.weight_block_size as number[];
  if (!Array.isArray(block) || block.length !== 2 || !block.every((n) => Number.isSafeInteger(n) && n > 0 && n <= 65536)) {
    fail(`should give "weight_block_size" as two positive integers (e.g. [128, 128]), got ${quoteValue(block)}; per-tensor FP8 is not supported.`);
  }
  return { blockSize: [block[0], block[1]] as [number, number] };
}

// torch.float8_e4m3fn: 1 sign, 4 exponent (bias 7), 3 mantissa bits; no infinities, S.1111.111 is NaN.
const E4M3_TABLE = (() => {
  const table = new Float32Array(256);
  for (let byte = 0; byte < 256; byte++) {
    const sign = byte & 0x80 ? -1 : 1;
    const exponent = (byte >> 3) & 0xf;
    const mantissa = byte & 0x7;
    if (exponent === 0xf && mantissa === 0x7) table[byte] = NaN;
    else if (exponent === 0) table[byte] = sign * (mantissa / 8) * 2 ** -6;
    else table[byte] = sign * (1 + mantissa / 8) * 2 ** (exponent - 7);
  }
  return table;
})();

export function e4m3ToFloat32(bytes: Uint8Array): Float32Array {
  const out = new Float32Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) out[i] = E4M3_TABLE[bytes[i]];
  return out;
}

/** Nearest e4m3 code (ties to even), saturating at ±448 as torch's `.to(torch.float8_e4m3fn)` of a scaled value stays in range. */
export function float32ToE4m3(values: Float32Array): Uint8Array {
  const out = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (Number.isNaN(v)) {
      out[i] = 0x7f;
      continue;
    }
    const sign = v < 0 || Object.is(v, -0) ? 0x80 : 0;
    const magnitude = Math.min(Math.abs(v), 448);
    let best = 0;
    let bestError = Infinity;
    for (let code = 0; code < 0x7f; code++) {
      const error = Math.abs(E4M3_TABLE[code] - magnitude);
      if (error < bestError || (error === bestError && (code & 1) === 0)) {
        best = code;
        bestError = error;
      }
    }
    out[i] = sign | best;
  }
  return out;
}

/** W[r][c] = fp8[r][c] · scales[r / blockRows][c / blockCols], for a 2-D [rows, cols] weight. */
export function dequantizeBlocks(codes: Uint8Array, rows: number, cols: number, scales: Float32Array, [blockRows, blockCols]: [number, number]): Float32Array {
  const values = e4m3ToFloat32(codes);
  const scaleCols = Math.ceil(cols / blockCols);
  for (let r = 0; r < rows; r++) {
    const scaleRow = Math.floor(r / blockRows) * scaleCols;
    for (let c = 0; c < cols; c++) values[r * cols + c] *= scales[scaleRow + Math.floor(c / blockCols)];
  }
  return values;
}

/**
 * A checkpoint's weights with its FP8 tensors readable as fp32: `has`, `info` and `readFloat32` treat an
 * F8_E4M3 weight like any other (info's dtype says F8_E4M3), everything else passes through.
 */
export class Fp8BlockWeights implements WeightSource {
  private readonly fp8 = new Map<string, UncomputableTensor>();

  constructor(
    private readonly inner: CheckpointWeights,
    private readonly quantization: Fp8BlockQuantization,
    folder: string,
  ) {
    for (const tensor of inner.uncomputableTensors()) if (tensor.dtype === 'F8_E4M3') this.fp8.set(tensor.name, tensor);
    const problems: string[] = [];
    for (const tensor of this.fp8.values()) {
      const problem = this.scaleProblem(tensor);
      if (problem) problems.push(problem);
    }
    if (problems.length) {
      const shown = problems.slice(0, 5).map((p) => `  - ${p}`).join('\n');
      throw new CheckpointError(problems[0].includes('has no') ? 'missingTensor' : 'wrongShape', `${folder}: FP8 weights without usable block scales (${problems.length}):\n${shown}${problems.length > 5 ? `\n  … and ${problems.length - 5} more` : ''}`, folder);
    }
  }

  private scaleProblem(tensor: UncomputableTensor): string | undefined {
    const scale = tensor.name + SCALE_SUFFIX;
    const [blockRows, blockCols] = this.quantization.blockSize;
    if (tensor.shape.length !== 2) return `${tensor.name} is F8_E4M3 with shape [${tensor.shape}]; block scales need a 2-D weight`;
    if (this.inner.fileOf(scale) === undefined) return `${tensor.name} is F8_E4M3 but the checkpoint has no ${scale}`;
    if (!this.inner.has(scale)) return `${scale} is ${this.inner.uncomputableTensors().find((t) => t.name === scale)?.dtype}; expected F32 or BF16`;
    const expected = [Math.ceil(tensor.shape[0] / blockRows), Math.ceil(tensor.shape[1] / blockCols)];
    const actual = this.inner.info(scale).shape;
    if (actual.join() !== expected.join()) return `${basename(this.inner.info(scale).file)}: ${scale} has shape [${actual.join(', ')}], expected [${expected.join(', ')}] for ${tensor.name} [${tensor.shape.join(', ')}] in ${blockRows} x ${blockCols} blocks`;
    return undefined;
  }

  /** Whether `name` is an FP8 weight (so its bytes are codes and `name + "_scale_inv"` belongs to it). */
  isFp8(name: string): boolean {
    return this.fp8.has(name);
  }

  get tensorCount(): number {
    return this.inner.tensorCount;
  }

  has(name: string): boolean {
    return this.fp8.has(name) || this.inner.has(name);
  }

  names(): string[] {
    return [...this.inner.names(), ...this.fp8.keys()];
  }

  fileOf(name: string): string | undefined {
    return this.inner.fileOf(name);
  }

  /** Uncomputable tensors other than the FP8 weights this reader decodes. */
  uncomputableTensors(): UncomputableTensor[] {
    return this.inner.uncomputableTensors().filter((tensor) => !this.fp8.has(tensor.name));
  }

  info(name: string): TensorInfo {
    const tensor = this.fp8.get(name);
    if (!tensor) return this.inner.info(name);
    return { name, dtype: 'F8_E4M3', shape: [...tensor.shape], file: tensor.file, byteLength: tensor.shape[0] * tensor.shape[1] };
  }

  async readFloat32(name: string): Promise<Float32Array> {
    const tensor = this.fp8.get(name);
    if (!tensor) return this.inner.readFloat32(name);
    const [rows, cols] = tensor.shape;
    return dequantizeBlocks(await this.inner.readRaw(name), rows, cols, await this.inner.readFloat32(name + SCALE_SUFFIX), this.quantization.blockSize);
  }

  async readFloat32Range(name: string, offset: number, elements: number): Promise<Float32Array> {
    if (!this.fp8.has(name)) return this.inner.readFloat32Range(name, offset, elements);
    return (await this.readFloat32(name)).slice(offset, offset + elements);
  }

  readRaw(name: string): Promise<Uint8Array> {
    return this.inner.readRaw(name);
  }

  readRawRange(name: string, byteOffset: number, byteLength: number): Promise<Uint8Array> {
    return this.inner.readRawRange(name, byteOffset, byteLength);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
