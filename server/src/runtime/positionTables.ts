import type { AttentionSpec, RopeScaling } from '../checkpoint/modelSpec';
import { ByteBudgetCache } from './byteBudgetCache';
import { scaledRopeFrequencies } from './ropeScaling';

/** The width of the cos/sin tables: the rotated part of each head (all of it unless the rotary is partial). */
export function rotaryDimOf(attention: AttentionSpec): number {
  return attention.rotaryDim ?? attention.headDim;
}

/**
 * RoPE cos/sin tables exactly as HF builds them in fp32: inv_freq = 1 / theta^(arange(0, d, 2) / d),
 * angles = position * inv_freq, duplicated across both halves of the head (rotate_half convention).
 * With `scaling` (YaRN, LongRoPE) the frequencies and a factor on cos and sin come from ropeScaling.ts;
 * LongRoPE's depend on the (padded) length, as transformers picks them by the batch's sequence length.
 */
export function ropeTables(headDim: number, theta: number, length: number, scaling?: RopeScaling): { cos: Float32Array; sin: Float32Array } {
  const half = headDim / 2;
  const scaled = scaling && scaledRopeFrequencies(headDim, theta, length, scaling);
  const invFreq = scaled?.invFreq ?? Float32Array.from({ length: half }, (_, i) => Math.fround(1 / Math.fround(Math.pow(theta, Math.fround((2 * i) / headDim)))));
  const factor = scaled?.factor ?? 1;
  const cos = new Float32Array(length * headDim);
  const sin = new Float32Array(length * headDim);
  for (let t = 0; t < length; t++) {
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(t * invFreq[i]);
      cos[t * headDim + i] = cos[t * headDim + half + i] = Math.cos(angle) * factor;
      sin[t * headDim + i] = sin[t * headDim + half + i] = Math.sin(angle) * factor;
    }
  }
  return { cos, sin };
}

/** [batch, 1, 1, seq, seq] additive bias: causal, and right padding never visible as a key. */
export function attentionBias(lengths: number[], padded: number): Float32Array {
  const bias = new Float32Array(lengths.length * padded * padded).fill(-Infinity);
  lengths.forEach((len, b) => {
    for (let i = 0; i < padded; i++) {
      const row = (b * padded + i) * padded;
      bias.fill(0, row, row + Math.min(i + 1, len));
    }
  });
  return bias;
}

/**
 * Where a batch's tokens live: layers take the real tokens only, sequence after sequence, and attention
 * alone spreads them over the padded [batch, seq] grid. `offsets[b]` is sequence b's first row,
 * `tokenSlots[row]` its token's grid place, `gridRows[place]` the row a grid place reads (padding
 * places read their sequence's first token: anything real will do, attention never lets it through).
 */
export function packedLayout(lengths: number[], padded: number): { offsets: number[]; tokenSlots: BigInt64Array; gridRows: BigInt64Array } {
  const offsets: number[] = [];
  let tokens = 0;
  for (const len of lengths) {
    offsets.push(tokens);
    tokens += len;
  }
  const tokenSlots = new BigInt64Array(tokens);
  const gridRows = new BigInt64Array(lengths.length * padded);
  lengths.forEach((len, b) => {
    for (let t = 0; t < padded; t++) {
      const row = t < len ? offsets[b] + t : offsets[b];
      gridRows[b * padded + t] = BigInt(row);
      if (t < len) tokenSlots[offsets[b] + t] = BigInt(b * padded + t);
    }
  });
  return { offsets, tokenSlots, gridRows };
}

/** Everything a batch's layers take that depends only on its sequence lengths. */
export interface BatchTables {
  layout: ReturnType<typeof packedLayout>;
  cos: Float32Array;
  sin: Float32Array;
  bias: Float32Array;
}

/**
 * Batch tables by shape (lengths and padded length), least recently used dropped beyond a byte budget.
 * Plan searches run the same batches hundreds of times, and building the tables took about 0.5 ms of a
 * 30 ms demo forward (more of a plan evaluation, which reruns only the last layers).
 */
export class BatchTablesCache {
  private readonly entries: ByteBudgetCache<BatchTables>;

  constructor(
    private readonly headDim: number,
    private readonly ropeTheta: number,
    budgetBytes = 64 * 1024 * 1024,
    private readonly ropeScaling?: RopeScaling,
  ) {
    this.entries = new ByteBudgetCache(budgetBytes, tableBytes);
  }

  get(lengths: number[], padded: number): BatchTables {
    const key = `${padded}:${lengths.join(',')}`;
    const cached = this.entries.get(key);
    if (cached) return cached;
    const { cos, sin } = ropeTables(this.headDim, this.ropeTheta, padded, this.ropeScaling);
    const tables: BatchTables = { layout: packedLayout(lengths, padded), cos, sin, bias: attentionBias(lengths, padded) };
    this.entries.set(key, tables);
    return tables;
  }
}

function tableBytes({ layout, cos, sin, bias }: BatchTables): number {
  return layout.tokenSlots.byteLength + layout.gridRows.byteLength + cos.byteLength + sin.byteLength + bias.byteLength;
}
