/**
 * What a model needs in memory, and which residency policy a budget allows. Pure arithmetic on the
 * model's shapes, so the CLI's `info`, the language server and the worker all say the same numbers
 * before anything is loaded.
 */
import * as os from 'node:os';
import { mlaShapes } from '../checkpoint/mlaShapes';
import type { LayerSpec, ModelSpec } from '../checkpoint/modelSpec';

export type Precision = 'fp32' | 'int8';
export const PRECISIONS: Precision[] = ['fp32', 'int8'];

/**
 * - `resident`: every layer loaded once, at open.
 * - `partial`: the deepest layers that fit stay loaded; the others pass through one streaming slot.
 * - `streamed`: one layer at a time.
 */
export type ResidencyPolicy = 'resident' | 'partial' | 'streamed';

/** The model's shapes without its tensor-name functions: what the main thread has (runtimeProtocol's ModelSummary). */
export type ModelShape = Omit<ModelSpec, 'tensors'>;

export interface MemoryPlan {
  precision: Precision;
  budgetBytes: number;
  policy: ResidencyPolicy;
  /** Layers kept loaded for the runtime's lifetime (all of them when resident). */
  residentLayers: number[];
  /** Every layer's weights in this precision, as onnxruntime holds them (the prepacked copy). */
  layerBytes: number[];
  /** The process baseline, the embedding and head where they are resident, and the layer writer when it writes ahead: held for the runtime's lifetime. */
  fixedBytes: number;
  /** The embedding as a JS fp32 copy. Resident only when every layer is; otherwise its rows are read from the checkpoint per batch. */
  embeddingBytes: number;
  embeddingResident: boolean;
  /** The head session's weights (lm_head, tied or not, and the final norm). Resident when every layer is, or when it fits beside the streaming slot; otherwise it streams through the slot like a layer, loaded only by work that needs logits or losses. */
  headBytes: number;
  headResident: boolean;
  /** What one streaming unit (a layer, a merged layer, the head) takes while it loads and runs: max(2 x weights, weights + a batch's work). */
  streamingSlotBytes: number;
  /** One batch's intermediates inside a layer and the head's logits chunk. */
  workBytes: number;
  /** The least budget that runs the model at all: one layer streaming, the fixed parts, the work, the minimum for hidden states. */
  streamingFloorBytes: number;
  /** Everything resident at once: what the model needs to run without streaming. */
  totalBytes: number;
  /** RAM the work set's hidden states may take before they spill to a temporary file. */
  hiddenStateBytes: number;
  /** Weight bytes loaded per pass over every layer (0 when resident). */
  streamedBytesPerPass: number;
  /**
   * Whether streamed layers are written ahead by the layer writer's thread while the layer before them
   * runs (layerWriter.ts): when layers stream and the budget has `writerBytes` beyond the floor.
   */
  writeAhead: boolean;
  /** What the layer writer holds (counted in the budget when `writeAhead`). */
  writerBytes: number;
  /** One line for the CLI and the output channel. */
  summary: string;
}

/** The runtime's failure when the model cannot run within the budget at all: a user's setting, said with the numbers. */
export class MemoryBudgetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MemoryBudgetError';
  }
}

const GB = 1e9;
const MiB = 2 ** 20;
/** Node, V8 and onnxruntime's own baseline in the worker (measured: about 150-250 MB before any session). */
const PROCESS_BASELINE_BYTES = 300 * MiB;
/** A worker thread's V8 heap and the checkpoint's index, in the layer writer. */
const WRITER_BASELINE_BYTES = 64 * MiB;
/** At least this much RAM for the work set's hidden states before spilling; what the budget leaves goes to them too. */
export const MIN_HIDDEN_STATE_BYTES = 256 * MiB;
/**
 * Weight bytes per second from a bf16 checkpoint to a loaded, prepacked fp32 session (widening, writing
 * the external data file, onnxruntime's load and prepack), measured on this project's 2-core VM with the
 * wide random model and an OLMoE-shaped layer: 0.25-0.4 GB/s. Only the one-line summary uses it; the
 * warm-up estimate measures the real rate.
 */
export const ASSUMED_LOAD_BYTES_PER_SECOND = 0.3 * GB;
/** The padded sequence length the attention buffers are sized for (the profile default is 256). */
const ESTIMATE_SEQUENCE_LENGTH = 512;

/** 50% of the machine's RAM minus 1 GB, at least 2 GB: leaves the editor, the OS and other work their share. */
export function defaultMemoryBudget(totalBytes = os.totalmem()): number {
  return Math.max(2 * GB, 0.5 * totalBytes - 1 * GB);
}

/**
 * Bytes of one decoder layer's weights as the session holds them. fp32: 4 bytes a parameter. int8: the
 * projection and expert matrices at 1 byte a parameter plus one fp32 scale per output channel; norms,
 * biases and the router stay fp32 (routing decides which experts run, and is tiny).
 */
export function layerWeightBytes(spec: ModelShape, layer: LayerSpec, precision: Precision): number {
  const { matrices, fp32Params } = layerParameters(spec, layer);
  const matrixBytes = matrices.reduce((sum, [rows, cols]) => sum + (precision === 'int8' ? rows * cols + 4 * rows : 4 * rows * cols), 0);
  return matrixBytes + 4 * fp32Params;
}

/** The head session's weights: lm_head (fp32, or int8 with a 4-byte scale per vocabulary row) and the final norm. */
export function headWeightBytes(spec: ModelShape, precision: Precision): number {
  const V = spec.vocabSize;
  const H = spec.hiddenSize;
  return (precision === 'int8' ? V * H + 4 * V : 4 * V * H) + 4 * H;
}

/** A layer's projection and expert matrices ([out, in] each) and its other (fp32) parameters. */
function layerParameters(spec: ModelShape, layer: LayerSpec): { matrices: [rows: number, cols: number][]; fp32Params: number } {
  const H = spec.hiddenSize;
  const { numHeads, numKvHeads, headDim, qkvBias, qkNorm } = spec.attention;
  const mla = mlaShapes(spec.attention, H);
  const matrices: [rows: number, cols: number][] = mla?.matrices ?? [
    [numHeads * headDim, H],
    [numKvHeads * headDim, H],
    [numKvHeads * headDim, H],
    [H, numHeads * headDim],
  ];
  let fp32Params = 2 * H + (mla?.normParameters ?? 0); // the two layer norms (and MLA's latent norms)
  if (qkvBias) fp32Params += (numHeads + 2 * numKvHeads) * headDim;
  if (qkNorm === 'full') fp32Params += (numHeads + numKvHeads) * headDim;
  if (qkNorm === 'perHead') fp32Params += 2 * headDim;
  const swiglu = (intermediate: number, count = 1) => {
    for (let i = 0; i < count; i++) matrices.push([intermediate, H], [intermediate, H], [H, intermediate]);
  };
  if (layer.kind === 'dense') swiglu(layer.mlp.intermediateSize);
  else {
    fp32Params += layer.moe.numExperts * H + (layer.moe.routing?.correctionBias ? layer.moe.numExperts : 0);
    swiglu(layer.moe.expert.intermediateSize, layer.moe.numExperts);
    if (layer.moe.sharedExpert) {
      swiglu(layer.moe.sharedExpert.intermediateSize);
      if (layer.moe.sharedExpert.gated) fp32Params += H;
    }
  }
  return { matrices, fp32Params };
}

/**
 * What the layer writer (layerWriter.ts) holds while it writes a layer ahead: its thread's own heap and,
 * for the largest matrix, the tensor read ahead and the one being written. In fp32 that is two stored
 * bf16 tensors (2 bytes a parameter each) and the two reused fp32 buffers they are widened into (4 each):
 * 12 bytes a parameter (an fp32 checkpoint's tensors are written as read: 8). In int8, the stored bits of
 * both and the int8 values of one: 5, counted as 6 for the quantizer's row buffers.
 */
export function layerWriterBytes(spec: ModelShape, precision: Precision): number {
  let largest = 0;
  for (const layer of spec.layers) for (const [rows, cols] of layerParameters(spec, layer).matrices) largest = Math.max(largest, rows * cols);
  return WRITER_BASELINE_BYTES + (precision === 'int8' ? 6 : 12) * largest;
}

/**
 * A merged layer's session: the layer with `mergedExperts` experts in place of its own (the router
 * keeps its E rows; the plan's router map reduces them to the merged ones).
 */
export function mergedLayerBytes(spec: ModelShape, layer: LayerSpec, mergedExperts: number, precision: Precision): number {
  if (layer.kind !== 'moe') return layerWeightBytes(spec, layer, precision);
  const merged: LayerSpec = { ...layer, moe: { ...layer.moe, numExperts: mergedExperts } };
  return layerWeightBytes(spec, merged, precision) + 4 * (layer.moe.numExperts - mergedExperts) * spec.hiddenSize;
}

/** One batch's intermediates inside a layer and the head's logits chunk (onnxruntime's arena reuses buffers between nodes, so this is a bound). */
export function batchWorkBytes(spec: ModelShape, maxBatchTokens: number): number {
  const T = maxBatchTokens;
  const H = spec.hiddenSize;
  const { numHeads, numKvHeads, headDim } = spec.attention;
  const seq = Math.min(T, ESTIMATE_SEQUENCE_LENGTH);
  const moe = spec.layers.map((l) => (l.kind === 'moe' ? l.moe.topK * l.moe.expert.intermediateSize * 3 + l.moe.numExperts * 4 + l.moe.topK * H * 2 : 3 * l.mlp.intermediateSize));
  const perToken = H * 8 + (numHeads + 2 * numKvHeads) * headDim * 3 + Math.max(...moe) + numHeads * seq * 3;
  const head = 2 * 32 * MiB + 256 * H * 4;
  return Math.round(T * perToken * 4 + head);
}

export interface MemoryPlanOptions {
  budgetBytes?: number;
  precision?: Precision;
  maxBatchTokens?: number;
  /** Overrides the RAM for hidden states (tests force spilling with it). */
  hiddenStateBytes?: number;
  /** Overrides what the layer writer is priced at (tests make room for it beside a tiny model with it). */
  writerBytes?: number;
}

/**
 * The policy for a budget. Loading a layer briefly holds it twice (the external data file onnxruntime
 * maps and its prepacked copy), and no batch runs meanwhile, so the streaming slot counts the larger of
 * two layers and one layer plus a batch's work. Pinning the
 * deepest layers rather than least-recently-used ones: passes run layers in order, and plain LRU over a
 * cyclic scan larger than the cache misses every layer, whereas every pass (a resumed plan evaluation
 * included) ends with the deepest layers. Throws MemoryBudgetError when one layer and the work cannot fit.
 */
export function planMemory(spec: ModelShape, options: MemoryPlanOptions = {}): MemoryPlan {
  const precision = options.precision ?? 'fp32';
  const budgetBytes = options.budgetBytes ?? defaultMemoryBudget();
  const layerBytes = spec.layers.map((layer) => layerWeightBytes(spec, layer, precision));
  const embeddingBytes = 4 * spec.vocabSize * spec.hiddenSize;
  // The head session holds its own lm_head (a tied embedding too), plus the final norm; in int8 the lm_head
  // is int8 with a scale per vocabulary row (headGraph.ts).
  const headBytes = headWeightBytes(spec, precision);
  // Loading it holds its finished weights twice (the file onnxruntime maps and its prepacked copy), or in
  // int8 the stored tensor, read whole, beside the int8 values quantized from it: 2 bytes a weight from
  // bf16, 4 from fp32 (the shape does not say which, so the larger), plus the 1 of the values.
  const headLoadBytes = precision === 'int8' ? 5 * spec.vocabSize * spec.hiddenSize + 4 * spec.vocabSize : 2 * headBytes;
  const workBytes = batchWorkBytes(spec, options.maxBatchTokens ?? 2048);
  const largest = Math.max(...layerBytes);
  const allLayers = layerBytes.reduce((a, b) => a + b, 0);
  const minHidden = options.hiddenStateBytes ?? MIN_HIDDEN_STATE_BYTES;
  const totalBytes = PROCESS_BASELINE_BYTES + embeddingBytes + headBytes + allLayers + Math.max(largest, workBytes, headLoadBytes - headBytes) + minHidden;
  // Streaming: the embedding's rows come from the checkpoint and the head may pass through the slot too,
  // so that one layer (Qwen3-30B-A3B's is 2.5 GB in fp32, its 152k-row embedding and head 1.2 GB each) is
  // what the floor is made of.
  const streamingSlotBytes = Math.max(2 * largest, largest + workBytes, headLoadBytes, headBytes + workBytes);
  const streamingFloorBytes = PROCESS_BASELINE_BYTES + streamingSlotBytes + minHidden;
  const needs = `needs ${formatBytes(totalBytes)} as ${precision}; budget ${formatBytes(budgetBytes)}`;
  const writerBytes = options.writerBytes ?? layerWriterBytes(spec, precision);
  const base = { precision, budgetBytes, layerBytes, embeddingBytes, headBytes, workBytes, streamingSlotBytes, streamingFloorBytes, totalBytes, writerBytes };
  const L = spec.layers.length;
  if (totalBytes <= budgetBytes) {
    const hiddenStateBytes = options.hiddenStateBytes ?? budgetBytes - (totalBytes - minHidden);
    const fixedBytes = PROCESS_BASELINE_BYTES + embeddingBytes + headBytes;
    return { ...base, fixedBytes, embeddingResident: true, headResident: true, policy: 'resident', residentLayers: spec.layers.map((l) => l.index), hiddenStateBytes, streamedBytesPerPass: 0, writeAhead: false, summary: `${needs}: all ${L} layers resident` };
  }
  if (streamingFloorBytes > budgetBytes) {
    const unit = streamingSlotBytes === headLoadBytes || streamingSlotBytes === headBytes + workBytes ? `the head takes ${formatBytes(headBytes)}` : `one layer takes up to ${formatBytes(largest)}`;
    throw new MemoryBudgetError(
      `The model cannot run within a memory budget of ${formatBytes(budgetBytes)} as ${precision}: ${unit} (${formatBytes(streamingSlotBytes)} while it loads or runs a batch of ${formatBytes(workBytes)}), ` +
        `the process ${formatBytes(PROCESS_BASELINE_BYTES)}, and the work set's hidden states at least ${formatBytes(minHidden)}, ${formatBytes(streamingFloorBytes)} in all. ` +
        `Raise moeStudio.memoryBudget (--memory-budget) to at least ${formatBytes(Math.ceil(streamingFloorBytes / 1e8) * 1e8)}${precision === 'fp32' ? ', or use int8 precision' : ''}.`,
    );
  }
  // What fits beside the slot, in order of what streaming it would cost: writing the next layer ahead
  // (it hides part of each streamed layer's conversion), the head (every pass with a loss loads it), then
  // the deepest layers; the embedding's rows are cheap to read per batch.
  let used = streamingFloorBytes;
  const writeAhead = used + writerBytes <= budgetBytes;
  if (writeAhead) used += writerBytes;
  const headResident = used + headBytes <= budgetBytes;
  if (headResident) used += headBytes;
  const residentLayers: number[] = [];
  for (let l = L - 1; l >= 0 && used + layerBytes[l] <= budgetBytes; l--) {
    residentLayers.unshift(l);
    used += layerBytes[l];
  }
  const fixedBytes = PROCESS_BASELINE_BYTES + (headResident ? headBytes : 0) + (writeAhead ? writerBytes : 0);
  const streamed = L - residentLayers.length;
  const streamedBytesPerPass = layerBytes.reduce((sum, bytes, l) => (residentLayers.includes(l) ? sum : sum + bytes), 0);
  const seconds = Math.max(1, Math.round(streamedBytesPerPass / ASSUMED_LOAD_BYTES_PER_SECOND));
  const policy: ResidencyPolicy = residentLayers.length > 0 ? 'partial' : 'streamed';
  const kept = (residentLayers.length > 0 ? `${residentLayers.length} of ${L} layers resident (loaded by the first pass), streaming ${streamed}` : `streaming ${streamed} layers`) + (headResident ? '' : ' and the head');
  return {
    ...base,
    fixedBytes,
    embeddingResident: false,
    headResident,
    policy,
    residentLayers,
    hiddenStateBytes: options.hiddenStateBytes ?? budgetBytes - used + minHidden,
    streamedBytesPerPass,
    writeAhead,
    summary: `${needs}: ${kept}, about ${seconds} s of weight loading per pass`,
  };
}

/** Decimal units, as disks and the table count: 27.7 GB, 950 MB. */
export function formatBytes(bytes: number): string {
  if (bytes >= GB) return `${(bytes / GB).toFixed(bytes >= 100 * GB ? 0 : 1)} GB`;
  return `${Math.max(1, Math.round(bytes / 1e6))} MB`;
}

/**
 * Tokens per forward call: with every layer resident, the runtime's batch limit (nothing is gained by
 * more); when layers stream, as many as keep the work set's hidden states and its captures, `inFlight`
 * work sets at once, within the RAM the plan leaves them, so each layer loads once per that many tokens.
 */
export function workSetTokens(memory: MemoryPlan, spec: ModelShape, outputs: { moe?: boolean; moeInputs?: boolean }, inFlight = 1): number {
  const batchTokens = 2048;
  if (memory.policy === 'resident') return batchTokens;
  const H = spec.hiddenSize;
  const capture = outputs.moe
    ? spec.layers.reduce((sum, layer) => (layer.kind === 'moe' ? sum + 4 * (layer.moe.numExperts + 3 * layer.moe.topK) + (outputs.moeInputs ? 4 * H : 0) : sum), 0)
    : 0;
  return Math.max(batchTokens, Math.floor(memory.hiddenStateBytes / inFlight / (4 * H + capture)));
}
