/**
 * Everything a profiling run accumulates: routing statistics of every layer and the token records
 * of the first tokens. One per worker; partial profilers merge into the final one.
 */
import { DEFAULT_GATING_THRESHOLDS, RoutingStatistics, type LayerAccumulatorState, type LayerRouting } from './statistics';
import { TokenRecorder, type SequenceTokens } from './tokenRecords';
import type { LayerStatistics, TokenRecord } from './types';

export interface ProfilerOptions {
  /** How many tokens from the start of the dataset keep a TokenRecord. */
  tokenRecords: number;
  gatingThresholds?: readonly number[];
}

/** A profiler's sums as plain data, for `postMessage` from a worker. */
export interface ProfilerState {
  tokens: number;
  layers: LayerAccumulatorState[];
  records: TokenRecord[];
}

export interface ProfileResult {
  tokens: number;
  gatingThresholds: number[];
  layers: LayerStatistics[];
  records: TokenRecord[];
}

export class Profiler {
  private readonly statistics: RoutingStatistics;
  private readonly recorder: TokenRecorder;
  private tokens = 0;

  constructor(options: ProfilerOptions) {
    this.statistics = new RoutingStatistics(options.gatingThresholds ?? DEFAULT_GATING_THRESHOLDS);
    this.recorder = new TokenRecorder(options.tokenRecords);
  }

  /** Adds one sequence: its tokens and the routing of each MoE layer over them. */
  addSequence(sequence: SequenceTokens, routing: readonly LayerRouting[]): void {
    for (const layer of routing) {
      if (layer.routerLogits.length !== sequence.tokenIds.length * layer.numExperts) {
        throw new Error(`row ${sequence.row}: layer ${layer.layer} has logits for ${layer.routerLogits.length / layer.numExperts} tokens, the sequence has ${sequence.tokenIds.length}`);
      }
      this.statistics.add(layer);
    }
    this.recorder.add(sequence, routing);
    this.tokens += sequence.tokenIds.length;
  }

  merge(other: Profiler | ProfilerState): void {
    const state = other instanceof Profiler ? other.toState() : other;
    this.statistics.merge(state.layers);
    this.recorder.merge(state.records);
    this.tokens += state.tokens;
  }

  toState(): ProfilerState {
    return { tokens: this.tokens, layers: this.statistics.toState(), records: this.recorder.toRecords() };
  }

  /** Bytes held by the routing sums (token records are bounded separately by their limit). */
  get statisticsByteSize(): number {
    return this.statistics.byteSize;
  }

  finalize(): ProfileResult {
    return {
      tokens: this.tokens,
      gatingThresholds: this.statistics.gatingThresholds,
      layers: this.statistics.finalize(),
      records: [...this.recorder.toRecords()],
    };
  }
}
