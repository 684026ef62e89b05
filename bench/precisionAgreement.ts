/**
 * How far int8 weights move a model from fp32: the share of top-k slots that pick the same expert, and the
 * difference in mean next-token loss, on the same tokens. Used by bench/realShape.bench.ts for the demo model
 * and the real-shape cuts; `topKAgreement` also compares captures taken in separate processes.
 */
import type { ForwardResult } from '../server/src/runtime/forwardTypes';
import { ModelRuntime, RuntimeOptions } from '../server/src/runtime/modelRuntime';
import type { Precision } from '../server/src/runtime/memoryBudget';

export interface Agreement {
  /** Slots whose expert the other precision also picked for that token and layer, over all slots. */
  topKAgreement: number;
  /** Slots compared (tokens x MoE layers x k). */
  slots: number;
  /** Mean next-token loss over every predicted token, per precision (when losses were computed). */
  loss?: { fp32: number; int8: number };
}

/**
 * Selected experts per MoE layer, concatenated over tokens ([tokens x k] per layer), as both precisions
 * report them. A slot agrees when its expert is among the reference's picks for the same token (order
 * within the top-k is not a routing difference). Dropped slots (-1) count as picks of "no expert".
 */
export function topKAgreement(reference: Int32Array[], other: Int32Array[], topK: number[]): { agreeing: number; slots: number } {
  if (reference.length !== other.length) throw new Error(`agreement: ${reference.length} against ${other.length} MoE layers`);
  let agreeing = 0;
  let slots = 0;
  reference.forEach((picks, layer) => {
    const k = topK[layer];
    if (picks.length !== other[layer].length) throw new Error(`agreement: layer ${layer} has ${picks.length} against ${other[layer].length} slots`);
    for (let row = 0; row < picks.length; row += k) {
      const expected = new Set(picks.subarray(row, row + k));
      for (let slot = row; slot < row + k; slot++) agreeing += expected.has(other[layer][slot]) ? 1 : 0;
    }
    slots += picks.length;
  });
  return { agreeing, slots };
}

/** Each MoE layer's selected experts over all sequences, in sequence order, and each layer's k. */
export function selectedByLayer(result: ForwardResult): { selected: Int32Array[]; topK: number[] } {
  const layers = result.sequences[0]?.moe ?? [];
  const selected = layers.map((_, m) => concat(result.sequences.map((s) => s.moe![m].selectedExperts)));
  return { selected, topK: layers.map((capture) => capture.topK) };
}

export function meanLoss(result: ForwardResult): number {
  let sum = 0;
  let count = 0;
  for (const s of result.sequences) for (const l of s.loss ?? []) (sum += l), count++;
  return sum / count;
}

/**
 * Runs `sequences` through the model at both precisions, one after the other (one runtime open at a time,
 * so the peak is one model's), with loss and MoE captures, and compares.
 */
export async function measurePrecisionAgreement(folder: string, sequences: Int32Array[], options: RuntimeOptions = {}): Promise<Agreement> {
  const run = async (precision: Precision) => {
    const runtime = await ModelRuntime.open(folder, { ...options, precision });
    try {
      return await runtime.forward({ sequences, outputs: { loss: true, moe: true } });
    } finally {
      await runtime.close();
    }
  };
  const fp32 = await run('fp32');
  const int8 = await run('int8');
  const reference = selectedByLayer(fp32);
  const { agreeing, slots } = topKAgreement(reference.selected, selectedByLayer(int8).selected, reference.topK);
  return { topKAgreement: agreeing / slots, slots, loss: { fp32: meanLoss(fp32), int8: meanLoss(int8) } };
}

export function formatAgreement(agreement: Agreement): string {
  const loss = agreement.loss ? `; mean loss fp32 ${agreement.loss.fp32.toFixed(4)}, int8 ${agreement.loss.int8.toFixed(4)} (${signed(agreement.loss.int8 - agreement.loss.fp32)})` : '';
  return `top-k slots agreeing ${(100 * agreement.topKAgreement).toFixed(1)}% of ${agreement.slots}${loss}`;
}

function signed(x: number): string {
  return `${x >= 0 ? '+' : ''}${x.toFixed(4)}`;
}

function concat(parts: Int32Array[]): Int32Array {
  const out = new Int32Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) out.set(p, (offset += p.length) - p.length);
  return out;
}
