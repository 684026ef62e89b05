import type { RuntimePlan } from './runtimePlan';

export interface ForwardOutputs {
  /** 'last': logits of each sequence's last token [vocab]; 'all': every position [len, vocab]. */
  logits?: 'last' | 'all';
  /** Per-token next-token cross-entropy, computed in the graph: loss[t] = -log p(token[t+1] | tokens[..t]). */
  loss?: boolean;
  /** Router logits, selected experts, gate weights and expert output norms of every MoE layer. */
  moe?: boolean;
  /** With `moe`: also the hidden states entering each MoE block (after the post-attention norm). */
  moeInputs?: boolean;
}

export interface ForwardRequest {
  sequences: Int32Array[];
  outputs: ForwardOutputs;
  plan?: RuntimePlan;
  /** Upper bound on batch * padded length per onnxruntime call (default 2048). */
  maxBatchTokens?: number;
}

/**
 * Several plans (variants) over the same sequences in one pass: each layer is loaded once for all of
 * them, and variants share a layer's work while their plans agree on it and on every layer before it.
 * `undefined` is the unchanged model.
 */
export interface ForwardVariantsRequest extends Omit<ForwardRequest, 'plan'> {
  plans: (RuntimePlan | undefined)[];
}

/** Where a forward is, reported between layers (the worker throttles it to a few a second). */
export interface ForwardProgress {
  /** Layers done in the current work set, of `layers`. */
  layersDone: number;
  layers: number;
  /** A work set is every batch of the request when layers stream, one batch when all are resident. */
  workSetsDone: number;
  workSets: number;
  seconds: number;
  /** Of `seconds`, spent loading layers that are not resident. */
  loadingSeconds: number;
  /** The rest of this forward, extrapolated from the layers done so far. */
  secondsLeft: number;
}

/** One MoE layer seen by one sequence; arrays are row-major with one row per token. */
export interface MoeLayerCapture {
  layer: number;
  /** E': experts after the plan's mapping/merging. */
  numExperts: number;
  topK: number;
  /** [len, E'] after the plan's router mapping, before its mask. */
  routerLogits: Float32Array;
  /** [len, topK], -1 where adaptive gating or the mask dropped the slot. */
  selectedExperts: Int32Array;
  /** [len, topK], renormalised when the model does. */
  gateWeights: Float32Array;
  /** [len, topK]: ||expert output|| before the gate weight (REAP scores are gate x norm). */
  expertOutputNorms: Float32Array;
  /** [len, hidden] when `moeInputs` was asked for. */
  inputs?: Float32Array;
}

export interface SequenceResult {
  logits?: Float32Array;
  /** [len - 1]. */
  loss?: Float32Array;
  moe?: MoeLayerCapture[];
}

export interface ForwardResult {
  sequences: SequenceResult[];
  /** Tokens processed, for throughput reports. */
  tokens: number;
}

/** "layer 3 of 16, about 40 s left" (and the work set when there are several). */
export function forwardProgressMessage(progress: ForwardProgress): string {
  const workSet = progress.workSets > 1 ? `work set ${progress.workSetsDone + 1} of ${progress.workSets}, ` : '';
  return `${workSet}layer ${progress.layersDone} of ${progress.layers}, about ${Math.round(progress.secondsLeft)} s left`;
}

/** Thrown (and rethrown on the main thread) when a forward is cancelled. */
export class ForwardCancelledError extends Error {
  constructor() {
    super('forward cancelled');
    this.name = 'AbortError';
  }
}
