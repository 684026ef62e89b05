/**
 * Streaming statistics of expert routing. Every accumulator is a sum, so memory is
 * O(layers × experts²) whatever the dataset size, two partial accumulators (from two workers)
 * merge by adding, and the result does not depend on how the tokens were split.
 * Sums are Float64: a float32 sum stops counting at 2^24 tokens.
 */
import type { MoeLayerCapture } from '../runtime/forwardTypes';
import type { LayerStatistics } from './types';

/** What the runtime captured for one MoE layer over T tokens (its optional MoE inputs are not needed here). */
export type LayerRouting = Omit<MoeLayerCapture, 'inputs'>;

/** T in 0, 0.025, …, 1: the default grid of the adaptive-gating curve. */
export const DEFAULT_GATING_THRESHOLDS: readonly number[] = Array.from({ length: 41 }, (_, i) => i / 40);

/** The sums behind one layer's statistics: plain data, so it can cross a worker boundary. */
export interface LayerAccumulatorState {
  layer: number;
  numExperts: number;
  topK: number;
  thresholds: number[];
  tokens: number;
  routedSlots: number;
  entropySum: number;
  tokenCounts: Float64Array;
  softCounts: Float64Array;
  fullSoftCounts: Float64Array;
  reapSums: Float64Array;
  routedEntropySums: Float64Array;
  top1Counts: Float64Array;
  /** [E × E]; only i < j is accumulated, the diagonal comes from tokenCounts. */
  coActivation: Float64Array;
  /** [E × E] Σ_t l_t l_tᵀ; only i ≤ j is accumulated. */
  logitGram: Float64Array;
  /** [E] Σ_t l_t: with the Gram matrix, the logits' covariance (for the correlation between experts). */
  logitSums: Float64Array;
  /** marginHistogram[b]: tokens whose p1 − p2 exceeds exactly b of the thresholds. */
  marginHistogram: Float64Array;
}

export class LayerAccumulator {
  private readonly state: LayerAccumulatorState;
  /** Softmax of the current token, reused to keep `add` allocation-free. */
  private readonly probabilities: Float64Array;

  constructor(layer: number, numExperts: number, topK: number, thresholds: readonly number[] = DEFAULT_GATING_THRESHOLDS) {
    if (!(numExperts >= 1 && topK >= 1 && topK <= numExperts)) throw new Error(`layer ${layer}: invalid routing shape E=${numExperts}, k=${topK}`);
    for (let i = 1; i < thresholds.length; i++) {
      if (!(thresholds[i] > thresholds[i - 1])) throw new Error('gating thresholds must be strictly ascending');
    }
    const E = numExperts;
    this.state = {
      layer, numExperts, topK, thresholds: [...thresholds],
      tokens: 0, routedSlots: 0, entropySum: 0,
      tokenCounts: new Float64Array(E), softCounts: new Float64Array(E), fullSoftCounts: new Float64Array(E),
      reapSums: new Float64Array(E), routedEntropySums: new Float64Array(E), top1Counts: new Float64Array(E),
      coActivation: new Float64Array(E * E), logitGram: new Float64Array(E * E), logitSums: new Float64Array(E),
      marginHistogram: new Float64Array(thresholds.length + 1),
    };
    this.probabilities = new Float64Array(E);
  }

  static fromState(state: LayerAccumulatorState): LayerAccumulator {
    const accumulator = new LayerAccumulator(state.layer, state.numExperts, state.topK, state.thresholds);
    accumulator.merge(state);
    return accumulator;
  }

  get layer(): number {
    return this.state.layer;
  }

  get tokens(): number {
    return this.state.tokens;
  }

  /** The sums, for `postMessage` from a worker (Float64Arrays are structured-cloneable). */
  toState(): LayerAccumulatorState {
    return this.state;
  }

  /** Bytes held by the sums: depends on E and the threshold grid only, never on tokens. */
  get byteSize(): number {
    const s = this.state;
    return [s.tokenCounts, s.softCounts, s.fullSoftCounts, s.reapSums, s.routedEntropySums, s.top1Counts, s.coActivation, s.logitGram, s.logitSums, s.marginHistogram, this.probabilities]
      .reduce((bytes, array) => bytes + array.byteLength, 0);
  }

  add(routing: LayerRouting): void {
    const s = this.state;
    const E = s.numExperts;
    const k = s.topK;
    if (routing.layer !== s.layer || routing.numExperts !== E || routing.topK !== k) {
      throw new Error(`layer ${s.layer} (E=${E}, k=${k}) was given routing of layer ${routing.layer} (E=${routing.numExperts}, k=${routing.topK})`);
    }
    const { routerLogits, selectedExperts, gateWeights, expertOutputNorms } = routing;
    const T = routerLogits.length / E;
    if (!Number.isInteger(T) || selectedExperts.length !== T * k || gateWeights.length !== T * k || expertOutputNorms.length !== T * k) {
      throw new Error(`layer ${s.layer}: routing arrays disagree: logits ${routerLogits.length} for E=${E}, experts ${selectedExperts.length}, gates ${gateWeights.length}, norms ${expertOutputNorms.length} for k=${k}`);
    }
    const p = this.probabilities;
    const thresholds = s.thresholds;
    for (let t = 0; t < T; t++) {
      const row = t * E;
      const entropy = this.softmax(routerLogits, row);
      s.entropySum += entropy;

      let p1 = 0;
      let p2 = 0;
      for (let e = 0; e < E; e++) {
        const value = p[e];
        s.fullSoftCounts[e] += value;
        if (value > p1) {
          p2 = p1;
          p1 = value;
        } else if (value > p2) {
          p2 = value;
        }
      }
      const margin = p1 - p2;
      let bin = 0;
      while (bin < thresholds.length && margin > thresholds[bin]) bin++;
      s.marginHistogram[bin]++;

      for (let i = 0; i < E; i++) {
        const li = routerLogits[row + i];
        s.logitSums[i] += li;
        const gramRow = i * E;
        for (let j = i; j < E; j++) s.logitGram[gramRow + j] += li * routerLogits[row + j];
      }

      const slots = t * k;
      let top1 = -1;
      let top1Gate = -Infinity;
      for (let a = 0; a < k; a++) {
        const expert = selectedExperts[slots + a];
        if (expert < 0) continue;
        if (expert >= E) throw new Error(`layer ${s.layer}: expert id ${expert} out of range (E=${E})`);
        const gate = gateWeights[slots + a];
        s.routedSlots++;
        s.tokenCounts[expert]++;
        s.softCounts[expert] += gate;
        s.reapSums[expert] += gate * expertOutputNorms[slots + a];
        s.routedEntropySums[expert] += entropy;
        if (gate > top1Gate) {
          top1Gate = gate;
          top1 = expert;
        }
        for (let b = a + 1; b < k; b++) {
          const other = selectedExperts[slots + b];
          if (other < 0 || other === expert) continue;
          s.coActivation[Math.min(expert, other) * E + Math.max(expert, other)]++;
        }
      }
      if (top1 >= 0) s.top1Counts[top1]++;
    }
    s.tokens += T;
  }

  /** Adds another partial accumulator of the same layer (e.g. from another worker). */
  merge(other: LayerAccumulator | LayerAccumulatorState): void {
    const o = other instanceof LayerAccumulator ? other.state : other;
    const s = this.state;
    if (o.layer !== s.layer || o.numExperts !== s.numExperts || o.topK !== s.topK) {
      throw new Error(`cannot merge layer ${o.layer} (E=${o.numExperts}, k=${o.topK}) into layer ${s.layer} (E=${s.numExperts}, k=${s.topK})`);
    }
    if (o.thresholds.length !== s.thresholds.length || o.thresholds.some((value, i) => value !== s.thresholds[i])) {
      throw new Error(`cannot merge layer ${s.layer}: different gating thresholds`);
    }
    s.tokens += o.tokens;
    s.routedSlots += o.routedSlots;
    s.entropySum += o.entropySum;
    const sums = ['tokenCounts', 'softCounts', 'fullSoftCounts', 'reapSums', 'routedEntropySums', 'top1Counts', 'coActivation', 'logitGram', 'logitSums', 'marginHistogram'] as const;
    for (const name of sums) {
      const target = s[name];
      const source = o[name];
      for (let i = 0; i < target.length; i++) target[i] += source[i];
    }
  }

  finalize(): LayerStatistics {
    const s = this.state;
    const E = s.numExperts;
    const perRouted = (sums: Float64Array) => Array.from(sums, (sum, e) => (s.tokenCounts[e] > 0 ? sum / s.tokenCounts[e] : 0));
    const perToken = (sums: Float64Array) => Array.from(sums, (sum) => (s.tokens > 0 ? sum / s.tokens : 0));

    const coActivation: number[][] = [];
    const logitCosine: number[][] = [];
    const logitCorrelation: number[][] = [];
    // Covariance from the sums: Σ l_i l_j / T − mean_i mean_j (Float64 sums of logits of order 1-10 keep
    // about 12 significant digits here, plenty for a similarity).
    const T = s.tokens;
    const mean = Array.from(s.logitSums, (sum) => (T > 0 ? sum / T : 0));
    const covariance = (i: number, j: number) => (T > 0 ? s.logitGram[Math.min(i, j) * E + Math.max(i, j)] / T - mean[i] * mean[j] : 0);
    const bounded = (x: number) => Math.max(-1, Math.min(1, x));
    for (let i = 0; i < E; i++) {
      const coRow: number[] = [];
      const cosRow: number[] = [];
      const corRow: number[] = [];
      for (let j = 0; j < E; j++) {
        const upper = Math.min(i, j) * E + Math.max(i, j);
        coRow.push(i === j ? s.tokenCounts[i] : s.coActivation[upper]);
        const norms = Math.sqrt(s.logitGram[i * E + i] * s.logitGram[j * E + j]);
        cosRow.push(norms > 0 ? bounded(s.logitGram[upper] / norms) : 0);
        const spread = Math.sqrt(Math.max(0, covariance(i, i)) * Math.max(0, covariance(j, j)));
        // A logit that never varies correlates with nothing, itself included (as a zero column's cosine).
        corRow.push(spread > 1e-12 ? bounded(covariance(i, j) / spread) : 0);
      }
      coActivation.push(coRow);
      logitCosine.push(cosRow);
      logitCorrelation.push(corRow);
    }

    // singleExpertShare[i] = share of tokens whose margin exceeds thresholds[i] = tokens in bins above i.
    const singleExpertShare = new Array<number>(s.thresholds.length);
    let above = 0;
    for (let i = s.thresholds.length - 1; i >= 0; i--) {
      above += s.marginHistogram[i + 1];
      singleExpertShare[i] = s.tokens > 0 ? above / s.tokens : 0;
    }

    return {
      layer: s.layer,
      numExperts: E,
      topK: s.topK,
      tokens: s.tokens,
      routedSlots: s.routedSlots,
      meanEntropy: s.tokens > 0 ? s.entropySum / s.tokens : 0,
      tokenCounts: Array.from(s.tokenCounts),
      usageShare: Array.from(s.tokenCounts, (count) => (s.routedSlots > 0 ? count / s.routedSlots : 0)),
      softCounts: Array.from(s.softCounts),
      fullSoftCounts: Array.from(s.fullSoftCounts),
      meanGate: perRouted(s.softCounts),
      reap: perRouted(s.reapSums),
      top1Share: perToken(s.top1Counts),
      routedEntropy: perRouted(s.routedEntropySums),
      coActivation,
      logitCosine,
      logitCorrelation,
      singleExpertShare,
    };
  }

  /** Writes softmax(logits[row .. row+E)) into `probabilities` and returns its entropy in nats. */
  private softmax(logits: Float32Array, row: number): number {
    const E = this.state.numExperts;
    const p = this.probabilities;
    let max = -Infinity;
    for (let e = 0; e < E; e++) max = Math.max(max, logits[row + e]);
    let sum = 0;
    for (let e = 0; e < E; e++) {
      p[e] = Math.exp(logits[row + e] - max);
      sum += p[e];
    }
    // H = -Σ p ln p = ln Σ exp(l − max) − Σ p (l − max), with no log of a vanishing p.
    let weighted = 0;
    for (let e = 0; e < E; e++) {
      p[e] /= sum;
      weighted += p[e] * (logits[row + e] - max);
    }
    return Math.max(0, Math.log(sum) - weighted);
  }
}

/** Statistics of every MoE layer; layers are created as their routing first arrives. */
export class RoutingStatistics {
  private readonly layers = new Map<number, LayerAccumulator>();

  constructor(private readonly thresholds: readonly number[] = DEFAULT_GATING_THRESHOLDS) {}

  static fromState(states: readonly LayerAccumulatorState[]): RoutingStatistics {
    const statistics = new RoutingStatistics(states[0]?.thresholds ?? DEFAULT_GATING_THRESHOLDS);
    statistics.merge(states);
    return statistics;
  }

  get gatingThresholds(): number[] {
    return [...this.thresholds];
  }

  add(routing: LayerRouting): void {
    let accumulator = this.layers.get(routing.layer);
    if (!accumulator) {
      accumulator = new LayerAccumulator(routing.layer, routing.numExperts, routing.topK, this.thresholds);
      this.layers.set(routing.layer, accumulator);
    }
    accumulator.add(routing);
  }

  merge(other: RoutingStatistics | readonly LayerAccumulatorState[]): void {
    const states = other instanceof RoutingStatistics ? other.toState() : other;
    for (const state of states) {
      let mine = this.layers.get(state.layer);
      if (!mine) {
        mine = new LayerAccumulator(state.layer, state.numExperts, state.topK, this.thresholds);
        this.layers.set(state.layer, mine);
      }
      mine.merge(state);
    }
  }

  toState(): LayerAccumulatorState[] {
    return this.sorted().map((accumulator) => accumulator.toState());
  }

  get byteSize(): number {
    return this.sorted().reduce((bytes, accumulator) => bytes + accumulator.byteSize, 0);
  }

  finalize(): LayerStatistics[] {
    return this.sorted().map((accumulator) => accumulator.finalize());
  }

  private sorted(): LayerAccumulator[] {
    return [...this.layers.values()].sort((a, b) => a.layer - b.layer);
  }
}
