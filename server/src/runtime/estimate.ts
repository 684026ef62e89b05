/**
 * Time and peak memory of long work, before it starts, from a short measured warm-up: one layer
 * (loaded as a pass would load it when it is not resident) and the head on one batch of the work's own
 * sequences, extrapolated to every layer, token, variant and pass.
 */
import type { ForwardOutputs } from './forwardTypes';
import { formatBytes } from './memoryBudget';
import type { ModelRuntime } from './modelRuntime';

const BATCH_TOKENS = 2048;

export interface WorkShape {
  /** Tokens of the work's sequences, once. */
  tokens: number;
  /** Times the sequences go through the model (EEP: one per generation; default 1). */
  repeats?: number;
  /** Plans per pass that run every layer (a population; plan plus full model: 2). Default 1. */
  variants?: number;
  /** Passes per repeat: work sets when layers stream (each loads every streamed layer once). Default 1. */
  passesPerRepeat?: number;
  /** Seconds per token the caller spends beside the runtime, overlapped with it (reading and tokenising rows). */
  hostSecondsPerToken?: number;
}

export interface WorkEstimate {
  seconds: number;
  loadingSeconds: number;
  peakBytes: number;
  summary: string;
}

/**
 * With every layer resident the warm-up is a whole forward of the sample with the work's outputs (timed
 * the second time: captures, the head and the JavaScript between sessions included); when layers stream,
 * one layer loaded and run as a pass would, extrapolated to every layer.
 */
export async function estimateWork(runtime: ModelRuntime, sample: Int32Array[], work: WorkShape, outputs: ForwardOutputs): Promise<WorkEstimate> {
  const { model, memory } = runtime;
  const layer = Math.max(0, model.layers.findIndex((l) => l.kind === 'moe'));
  const batch = fullBatch(sample);
  const timing = await runtime.measureLayer(layer, batch);
  let perToken = (model.layers.length * timing.layerSeconds + (outputs.loss || outputs.logits ? timing.headSeconds : 0)) / timing.tokens;
  if (memory.policy === 'resident') {
    const tokens = batch.reduce((n, s) => n + s.length, 0);
    await runtime.forward({ sequences: batch, outputs });
    // The same work under another batch key: the prefix cache would otherwise answer the repeat from its final hidden state.
    const timed = batch.length > 1 ? [...batch.slice(1), batch[0]] : [Int32Array.from(batch[0]).reverse()];
    const started = performance.now();
    await runtime.forward({ sequences: timed, outputs });
    perToken = (performance.now() - started) / 1000 / tokens;
  }
  const repeats = work.repeats ?? 1;
  const variants = work.variants ?? 1;
  const passes = repeats * (work.passesPerRepeat ?? 1);
  const computeSeconds = work.tokens * repeats * variants * perToken;
  const resident = new Set(memory.residentLayers);
  const loadPerByte = timing.loadSeconds / memory.layerBytes[layer];
  const loadingSeconds = resident.has(layer) ? 0 : passes * loadPerByte * memory.layerBytes.reduce((sum, bytes, l) => (resident.has(l) ? sum : sum + bytes), 0);
  // The caller's own work overlaps the runtime's (the next rows are read while the worker runs), so the slower side sets the pace.
  const seconds = Math.max(computeSeconds + loadingSeconds, work.tokens * repeats * (work.hostSecondsPerToken ?? 0));
  // Weights held at once, plus the hidden states of a work set (all variants), as far as RAM holds them before spilling.
  const largest = Math.max(...memory.layerBytes);
  const weights = memory.policy === 'resident' ? memory.layerBytes.reduce((a, b) => a + b, 0) + memory.workBytes : largest + Math.max(largest, memory.workBytes) + memory.residentLayers.reduce((sum, l) => sum + memory.layerBytes[l], 0);
  const tokensAtOnce = memory.policy === 'resident' ? Math.min(work.tokens, 2048) : work.tokens / (work.passesPerRepeat ?? 1);
  const hidden = Math.min(memory.hiddenStateBytes, 4 * model.hiddenSize * tokensAtOnce * (variants + 1));
  const peakBytes = memory.fixedBytes + weights + hidden;
  const loading = loadingSeconds > 0 ? ` (${formatDuration(loadingSeconds)} of it loading weights, ${passes} pass${passes === 1 ? '' : 'es'})` : '';
  return { seconds, loadingSeconds, peakBytes, summary: `estimated ${formatDuration(seconds)}${loading}, peak memory about ${formatBytes(peakBytes)}` };
}

/**
 * One batch as the work's batches are (about 2048 tokens): the sample's sequences, repeated when there
 * are fewer. A per-token cost measured on a small batch is up to a third too high on this machine.
 */
function fullBatch(sample: Int32Array[]): Int32Array[] {
  const batch: Int32Array[] = [];
  let tokens = 0;
  for (let i = 0; sample.length > 0; i++) {
    const sequence = sample[i % sample.length];
    if (batch.length > 0 && tokens + sequence.length > BATCH_TOKENS) break;
    batch.push(sequence);
    tokens += sequence.length;
  }
  return batch;
}

export function formatDuration(seconds: number): string {
  if (seconds < 60) return `${Math.max(1, Math.round(seconds))} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.floor(seconds % 60)} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
}
