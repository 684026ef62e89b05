/**
 * Time and peak memory of long work, before it starts, from a short measured warm-up: one layer
 * (loaded as a pass would load it when it is not resident, twice: from disk, then from the page cache)
 * and the head on one batch of the work's own sequences, extrapolated to every layer, token, variant,
 * pass and merged layer the work builds (`extrapolate`, pure arithmetic, unit-tested).
 */
import * as os from 'node:os';
import type { ForwardOutputs } from './forwardTypes';
import { formatBytes, layerWeightBytes, type MemoryPlan, mergedLayerBytes, type ModelShape } from './memoryBudget';
import type { LayerTiming } from './modelEngine';
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
  /** Tokens of the batches the work runs (evaluation chunks can be one sequence); default 2048. */
  batchTokens?: number;
  /** Seconds per token the caller spends beside the runtime, overlapped with it (reading and tokenising rows). */
  hostSecondsPerToken?: number;
  /** Merged layers the whole work builds (EEP's merge phase: candidates x MoE layers), each like `matrix` (rows: merged experts). */
  merges?: { builds: number; matrix: number[][] };
  /** Work the caller does in turn with the runtime's, measured by the caller (EEP's neuron alignment), and what it is. */
  alongside?: { seconds: number; what: string };
}

export interface WorkEstimate {
  seconds: number;
  loadingSeconds: number;
  /** Building merged layers (merging the experts, loading the session). */
  mergingSeconds: number;
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
  const batch = fullBatch(sample, work.batchTokens ?? BATCH_TOKENS);
  // A streamed layer is loaded once per pass and run on every batch of it, for every variant.
  const runsPerLoad = Math.ceil(work.tokens / (work.passesPerRepeat ?? 1) / (work.batchTokens ?? BATCH_TOKENS)) * (work.variants ?? 1);
  const passes = (work.repeats ?? 1) * (work.passesPerRepeat ?? 1);
  const timing = await runtime.measureLayer(layer, batch, work.merges?.matrix, runsPerLoad, passes);
  let forwardSecondsPerToken: number | undefined;
  if (memory.policy === 'resident') {
    const tokens = batch.reduce((n, s) => n + s.length, 0);
    await runtime.forward({ sequences: batch, outputs });
    // The same work under another batch key: the prefix cache would otherwise answer the repeat from its final hidden state.
    const timed = batch.length > 1 ? [...batch.slice(1), batch[0]] : [Int32Array.from(batch[0]).reverse()];
    const started = performance.now();
    await runtime.forward({ sequences: timed, outputs });
    forwardSecondsPerToken = (performance.now() - started) / 1000 / tokens;
  }
  return extrapolate({ model, memory, timing, forwardSecondsPerToken, work, withHead: outputs.loss === true || outputs.logits !== undefined, pageCacheBytes: os.totalmem() - memory.budgetBytes });
}

export interface ExtrapolationInput {
  model: ModelShape;
  memory: MemoryPlan;
  /** The warm-up's layer (measured on the first MoE layer). */
  timing: LayerTiming;
  /** A whole resident forward's seconds per token, when every layer is resident. */
  forwardSecondsPerToken?: number;
  work: WorkShape;
  withHead: boolean;
  /** RAM the OS may keep the checkpoint's files in beside the runtime (total memory less the budget). */
  pageCacheBytes: number;
}

/**
 * - compute: tokens x repeats x variants x (every layer's time per token + the head's);
 * - loading: per pass, every streamed layer at the warm-up's rate per byte; the first pass at the rate
 *   of the first load (the checkpoint read from disk), later ones at the reload's rate when the streamed
 *   layers' checkpoint bytes (bf16: half their fp32 bytes) fit the page cache, else at the first rate;
 *   and the pinned layers no pass has loaded yet, by the first pass at the streamed layer's rate, and
 *   when those loads were unpacked and the work runs them often enough, again by a later pass, at the
 *   warm-up's prepacked reload's rate;
 * - merging: every merged layer the work builds, at the measured build of one like it;
 * - host: the caller's own work overlaps the runtime's, so the slower side sets the pace.
 */
export function extrapolate(input: ExtrapolationInput): WorkEstimate {
  const { model, memory, timing, work } = input;
  const measured = timing.layer;
  const perToken = input.forwardSecondsPerToken ?? (model.layers.length * timing.layerSeconds + (input.withHead ? timing.headSeconds : 0)) / timing.tokens;
  const repeats = work.repeats ?? 1;
  const variants = work.variants ?? 1;
  const passes = repeats * (work.passesPerRepeat ?? 1);
  const computeSeconds = work.tokens * repeats * variants * perToken;

  const resident = new Set(memory.residentLayers);
  const streamedBytes = memory.layerBytes.reduce((sum, bytes, l) => (resident.has(l) ? sum : sum + bytes), 0);
  let loadingSeconds = 0;
  if (streamedBytes > 0 && !resident.has(measured)) {
    const perByte = timing.loadSeconds / memory.layerBytes[measured];
    const checkpointBytes = model.layers.reduce((sum, layer, l) => (resident.has(l) ? sum : sum + layerWeightBytes(model, layer, 'fp32') / 2), 0);
    const laterPerByte = checkpointBytes <= input.pageCacheBytes && timing.reloadSeconds > 0 ? timing.reloadSeconds / memory.layerBytes[measured] : perByte;
    loadingSeconds = streamedBytes * (perByte + (passes - 1) * laterPerByte);
  }
  if (input.withHead && !memory.headResident) loadingSeconds += passes * timing.headLoadSeconds;
  const pinned = timing.pinned;
  if (pinned) {
    // The first pass loads them as it loads the streamed layers; when that was unpacked, a later pass may reload them prepacked (reloadBytes).
    const firstPerByte = !resident.has(measured) && timing.loadSeconds > 0 ? timing.loadSeconds / memory.layerBytes[measured] : (pinned.prepackedPerByte ?? 0);
    loadingSeconds += pinned.loadBytes * firstPerByte;
    if (passes > 1) loadingSeconds += pinned.reloadBytes * (pinned.prepackedPerByte ?? firstPerByte);
  }

  let mergingSeconds = 0;
  if (work.merges && timing.mergeSeconds !== undefined) mergingSeconds = work.merges.builds * timing.mergeSeconds;
  const alongside = work.alongside?.seconds ?? 0;
  const seconds = Math.max(computeSeconds + loadingSeconds + mergingSeconds, work.tokens * repeats * (work.hostSecondsPerToken ?? 0)) + alongside;

  // Weights held at once, plus the hidden states of a work set (all variants), as far as RAM holds them before spilling.
  const residentBytes = memory.residentLayers.reduce((sum, l) => sum + memory.layerBytes[l], 0);
  const mergedSlot = work.merges && memory.policy === 'resident' ? 2 * mergedLayerBytes(model, model.layers[measured], work.merges.matrix.length, memory.precision) : 0;
  const weights = memory.policy === 'resident' ? residentBytes + Math.max(memory.workBytes, mergedSlot) : residentBytes + memory.streamingSlotBytes;
  const tokensAtOnce = memory.policy === 'resident' && !work.merges ? Math.min(work.tokens, BATCH_TOKENS) : work.tokens / (work.passesPerRepeat ?? 1);
  const hidden = Math.min(memory.hiddenStateBytes, 4 * model.hiddenSize * tokensAtOnce * (variants + 1));
  const peakBytes = memory.fixedBytes + weights + hidden;

  const parts = [
    ...(loadingSeconds > 0 ? [`${formatDuration(loadingSeconds)} of it loading weights, ${passes} pass${passes === 1 ? '' : 'es'}`] : []),
    ...(mergingSeconds > 0 ? [`${formatDuration(mergingSeconds)} building ${work.merges!.builds} merged layers`] : []),
    ...(alongside > 0 ? [`${formatDuration(alongside)} ${work.alongside!.what}`] : []),
  ];
  const detail = parts.length > 0 ? ` (${parts.join('; ')})` : '';
  return { seconds, loadingSeconds, mergingSeconds, peakBytes, summary: `estimated ${formatDuration(seconds)}${detail}, peak memory about ${formatBytes(peakBytes)}` };
}

/**
 * One batch as the work's batches are (about `batchTokens`): the sample's sequences, repeated when there
 * are fewer. A per-token cost measured on a small batch is up to a third too high on this machine, and
 * one measured on a large batch too low for work that runs small ones.
 */
function fullBatch(sample: Int32Array[], batchTokens: number): Int32Array[] {
  const batch: Int32Array[] = [];
  let tokens = 0;
  for (let i = 0; sample.length > 0; i++) {
    const sequence = sample[i % sample.length];
    if (batch.length > 0 && tokens + sequence.length > batchTokens) break;
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
