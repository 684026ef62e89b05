import { ByteBudgetCache } from './byteBudgetCache';

/**
 * Hidden states of the unchanged model entering a given layer, per batch of token ids. Evaluating many
 * plans on the same batches then reruns only the layers from the first one a plan changes.
 * Least-recently-used entries are dropped beyond the byte budget.
 */
export class PrefixCache {
  private readonly entries: ByteBudgetCache<Float32Array>;

  constructor(budgetBytes: number) {
    this.entries = new ByteBudgetCache(budgetBytes, (hidden) => hidden.byteLength);
  }

  get bytes(): number {
    return this.entries.size;
  }

  /** The deepest cached hidden state at or before `layer` (the prefix up to there is plan-independent). */
  lookup(batch: string, layer: number): { layer: number; hidden: Float32Array } | undefined {
    for (let l = layer; l > 0; l--) {
      const hidden = this.entries.get(`${batch}@${l}`);
      if (hidden) return { layer: l, hidden };
    }
    return undefined;
  }

  store(batch: string, layer: number, hidden: Float32Array): void {
    if (layer > 0) this.entries.set(`${batch}@${layer}`, hidden);
  }

  clear(): void {
    this.entries.clear();
  }
}

/** A content hash of a batch's token ids (FNV-1a over lengths and ids). */
export function batchKey(sequences: Int32Array[]): string {
  let hash = 0x811c9dc5;
  let hash2 = 0x01000193;
  const mix = (value: number) => {
    hash = Math.imul(hash ^ value, 0x01000193);
    hash2 = Math.imul(hash2 ^ value, 0x5bd1e995) ^ (hash2 >>> 15);
  };
  for (const sequence of sequences) {
    mix(sequence.length);
    for (const id of sequence) mix(id);
  }
  return `${sequences.length}:${(hash >>> 0).toString(16)}${(hash2 >>> 0).toString(16)}`;
}
