/**
 * Per-token routing of the first N tokens of a dataset, for hovers and decorations. Memory is
 * bounded by N × layers × k whatever the dataset size.
 */
import type { LayerRouting } from './statistics';
import type { TokenRecord } from './types';

/** The tokens of one sequence: where they come from in the dataset. */
export interface SequenceTokens {
  /** 0-based dataset row the sequence was cut from. */
  row: number;
  tokenIds: ArrayLike<number>;
  /** Per token, [start, end) character offsets in the row's text. */
  offsets: ArrayLike<readonly [number, number]>;
}

export class TokenRecorder {
  private records: TokenRecord[] = [];

  constructor(readonly limit: number) {
    if (!(Number.isInteger(limit) && limit >= 0)) throw new Error(`token record limit must be a non-negative integer, got ${limit}`);
  }

  get full(): boolean {
    return this.records.length >= this.limit;
  }

  /** Records the sequence's tokens while there is room; `routing` is one entry per MoE layer. */
  add(sequence: SequenceTokens, routing: readonly LayerRouting[]): void {
    if (this.full) return;
    const count = sequence.tokenIds.length;
    if (sequence.offsets.length !== count) throw new Error(`row ${sequence.row}: ${count} tokens but ${sequence.offsets.length} offsets`);
    const layers = [...routing].sort((a, b) => a.layer - b.layer);
    for (const layer of layers) {
      if (layer.selectedExperts.length !== count * layer.topK) {
        throw new Error(`row ${sequence.row}: layer ${layer.layer} routed ${layer.selectedExperts.length / layer.topK} tokens, the sequence has ${count}`);
      }
    }
    for (let t = 0; t < count && !this.full; t++) {
      const experts: number[][] = [];
      const gates: number[][] = [];
      for (const layer of layers) {
        const chosen: { expert: number; gate: number }[] = [];
        for (let slot = t * layer.topK; slot < (t + 1) * layer.topK; slot++) {
          if (layer.selectedExperts[slot] >= 0) chosen.push({ expert: layer.selectedExperts[slot], gate: layer.gateWeights[slot] });
        }
        chosen.sort((a, b) => b.gate - a.gate);
        experts.push(chosen.map((c) => c.expert));
        gates.push(chosen.map((c) => c.gate));
      }
      const [start, end] = sequence.offsets[t];
      this.records.push({ row: sequence.row, start, end, token: sequence.tokenIds[t], experts, gates });
    }
  }

  /**
   * Adds another recorder's tokens and keeps the first N in dataset order (row, then offset), so
   * the result is the same however rows were split between workers.
   */
  merge(other: TokenRecorder | readonly TokenRecord[]): void {
    const incoming = other instanceof TokenRecorder ? other.records : other;
    this.records = [...this.records, ...incoming]
      .sort((a, b) => a.row - b.row || a.start - b.start)
      .slice(0, this.limit);
  }

  toRecords(): TokenRecord[] {
    return this.records;
  }
}
