/**
 * NAEE's layer error: how far an MoE block's output moves on calibration tokens when only some experts
 * stay routable (the others' logits at -inf, so tokens re-route among the kept ones).
 *
 * The runtime runs whole models; it has no single-layer forward and does not return a block's output.
 * But the block is cheap to evaluate for many subsets once its pieces are known: its input x and router
 * logits come from one captured forward of the unchanged model, every expert's output f_e(x) is computed
 * here once per layer (a SwiGLU per token and expert), and a subset S only changes the mixing:
 * y_S(x) = Σ_{e ∈ topk_S(x)} g_e(x) f_e(x), with g the softmax over S (renormalised over the top-k when
 * the model does). Scoring a subset is then tokens × k × hidden multiply-adds, so NAEE's 70 subsets per
 * layer cost less than one forward. A shared expert (Qwen2-MoE) adds the same term to every subset and
 * cancels from the difference.
 *
 * The same pieces serve the closed-form repairs (output compensation, router refit): a planned layer's
 * routing is computed from the captured logits (through its router map), its experts' outputs are the
 * cached ones (a merged row's are computed once from its merged weights), and what the least squares
 * needs is summed over the tokens.
 */
import type { ClampedSwiglu, ModelSpec, MoeSpec, WeightSource } from '../../checkpoint/modelSpec';
import { layerWeights, mergedMxfp4, mergeExperts, type MergedMxfp4, type MlpWeights, resolveWeight } from '../../runtime/layerWeights';
import type { NeuronOrder } from '../../runtime/neuronOrder';
import type { CompensationSums } from '../methods/outputCompensation';
import type { PlanLayer } from '../planFile';
import { oneHotRows } from '../runtimeConversion';
import { throwIfAborted } from '../statistics';
import { sparsemixerPicks } from './sparsemixerPicks';

interface LayerCache {
  moe: MoeSpec;
  tokens: number;
  logits: Float32Array;
  /** Per expert: its output [tokens, hidden] for every token. */
  outputs: Float32Array[];
  /** The unchanged block's routed output [tokens, hidden]. */
  full: Float32Array;
  /** The block's input [tokens, hidden], for merged experts' outputs. */
  inputs: Float32Array;
  experts: MlpWeights[];
  intermediate: number;
  /** MXFP4 checkpoints store merged experts re-encoded. */
  mxfp4?: MergedMxfp4;
  /** `error`'s per-token products of the expert outputs, computed at its first call. */
  products?: { gram: Float64Array; cross: Float64Array; fullNorm: Float64Array };
}

/** Every expert's output of one layer on its captured inputs, one [tokens, hidden] array per expert. */
export type ExpertOutputsFunction = (layer: number, inputs: Float32Array, tokens: number) => Promise<Float32Array[]>;

interface Captured {
  inputs: Float32Array;
  routerLogits: Float32Array;
  tokens: number;
}

/**
 * Layers whose expert outputs stay cached at once: E x tokens x hidden floats a layer (OLMoE-1B-7B at
 * 1024 tokens: 537 MB, 8.6 GB for all 16 layers), so a large model keeps one, a small one all.
 */
const CACHE_BYTES = 1024 * 1024 * 1024;

export class LayerReconstruction {
  private readonly layers = new Map<number, LayerCache>();
  private readonly hidden: number;
  private cachedBytes = 0;

  private constructor(
    private readonly spec: ModelSpec,
    private readonly weights: WeightSource,
    private readonly captured: Map<number, Captured>,
    private readonly expertOutputs: ExpertOutputsFunction,
    private readonly signal?: AbortSignal,
  ) {
    this.hidden = spec.hiddenSize;
  }

  /**
   * Nothing is computed here: a layer's expert outputs are computed when it is first asked for
   * (`prepare`, or any async method), by `expertOutputs` (the runtime's worker; JavaScript by default),
   * and the most recent layers are kept within CACHE_BYTES (at least one).
   */
  static async build(spec: ModelSpec, weights: WeightSource, captured: Map<number, Captured>, signal?: AbortSignal, expertOutputs?: ExpertOutputsFunction): Promise<LayerReconstruction> {
    return new LayerReconstruction(spec, weights, captured, expertOutputs ?? ((layer, inputs, tokens) => javascriptExpertOutputs(spec, weights, layer, inputs, tokens, signal)), signal);
  }

  /** Computes (or finds cached) the expert outputs of `layer`; the sync methods need it first. */
  async prepare(layer: number): Promise<void> {
    await this.load(layer);
  }

  private async load(index: number): Promise<LayerCache> {
    const cached = this.layers.get(index);
    if (cached) return cached;
    const capture = this.captured.get(index);
    const layer = this.spec.layers[index];
    if (!capture || layer?.kind !== 'moe') throw new Error(`layer ${index} has no captured calibration inputs`);
    throwIfAborted(this.signal);
    const outputs = await this.expertOutputs(index, capture.inputs, capture.tokens);
    const experts = layerWeights(this.spec, this.weights, layer).experts!;
    const cache: LayerCache = { moe: layer.moe, tokens: capture.tokens, logits: capture.routerLogits, outputs, full: new Float32Array(0), inputs: capture.inputs, experts, intermediate: layer.moe.expert.intermediateSize, mxfp4: mergedMxfp4(this.spec, layer) };
    cache.full = mix(cache, this.hidden, allExperts(layer.moe.numExperts));
    const bytes = outputs.reduce((sum, o) => sum + o.byteLength, 0) + cache.full.byteLength;
    for (const [other, old] of this.layers) {
      if (this.cachedBytes + bytes <= CACHE_BYTES) break;
      this.layers.delete(other);
      this.cachedBytes -= old.outputs.reduce((sum, o) => sum + o.byteLength, 0) + old.full.byteLength;
    }
    this.layers.set(index, cache);
    this.cachedBytes += bytes;
    return cache;
  }

  /** Calibration tokens per layer. */
  tokens(layer: number): number {
    return this.captured.get(layer)?.tokens ?? 0;
  }

  /**
   * Mean over calibration tokens of ‖y_kept − y_all‖² for the block of `layer`. Expanded per token as
   * Σ_s Σ_r g_s g_r ⟨f_s, f_r⟩ − 2 Σ_s g_s ⟨f_s, y_all⟩ + ‖y_all‖² over the k experts the subset routes to,
   * from products computed once per layer: k² + k terms a token instead of k × hidden (NAEE's greedy search
   * on OLMoE-1B-7B scores about 2000 subsets a layer; at 8 × 2048 multiply-adds a token that was a minute
   * of JavaScript per layer). Keeping every expert reproduces the block: 0.
   */
  async error(layer: number, keptExperts: number[]): Promise<number> {
    const cache = await this.load(layer);
    const E = cache.moe.numExperts;
    const mask = new Array<boolean>(E).fill(false);
    for (const e of keptExperts) mask[e] = true;
    if (mask.every(Boolean)) return 0;
    const { gram, cross, fullNorm } = (cache.products ??= outputProducts(cache, this.hidden));
    const routing = new Routing(E, Math.min(cache.moe.topK, keptExperts.length));
    let sum = 0;
    for (let t = 0; t < cache.tokens; t++) {
      routing.select(cache, mask, t);
      const { chosen, gates, count } = routing;
      let d = fullNorm[t];
      for (let s = 0; s < count; s++) {
        const e = chosen[s];
        d -= 2 * gates[s] * cross[t * E + e];
        for (let r = 0; r < count; r++) d += gates[s] * gates[r] * gram[(t * E + e) * E + chosen[r]];
      }
      sum += Math.max(0, d);
    }
    return sum / cache.tokens;
  }

  /** The captured router logits of `layer`, [tokens × E]. */
  routerLogits(layer: number): { logits: Float32Array; tokens: number; numExperts: number } {
    const capture = this.captured.get(layer);
    const spec = this.spec.layers[layer];
    if (!capture || spec?.kind !== 'moe') throw new Error(`layer ${layer} has no captured calibration inputs`);
    return { logits: capture.routerLogits, tokens: capture.tokens, numExperts: spec.moe.numExperts };
  }

  /**
   * Mean over the tokens routed to `removed` (its top-k tokens in the full model; every token if none)
   * of ‖f_removed − f_kept‖²: how well a kept expert stands in for a removed one.
   */
  outputDistance(layer: number, removed: number, kept: number): number {
    const cache = this.cacheOf(layer);
    const { numExperts: E, topK } = cache.moe;
    const H = this.hidden;
    let sum = 0;
    let count = 0;
    const add = (t: number) => {
      const a = cache.outputs[removed];
      const b = cache.outputs[kept];
      for (let h = t * H; h < (t + 1) * H; h++) sum += (a[h] - b[h]) ** 2;
      count++;
    };
    for (let t = 0; t < cache.tokens; t++) {
      const own = cache.logits[t * E + removed];
      let above = 0;
      for (let e = 0; e < E; e++) if (cache.logits[t * E + e] > own) above++;
      if (above < topK) add(t);
    }
    if (count === 0) for (let t = 0; t < cache.tokens; t++) add(t);
    return sum / Math.max(1, count);
  }

  /**
   * Output compensation's sums for the planned layer: its routing (router map applied to the captured
   * logits, softmax over its E' rows, top-k, renormalised when the model does) and its experts' outputs
   * against the full block's output, as in `error`, but for any plan layer (merged rows included).
   */
  async compensationSums(plan: PlanLayer): Promise<CompensationSums> {
    const cache = await this.load(plan.layer);
    const H = this.hidden;
    const { numExperts: E, normTopKProb } = cache.moe;
    const rows = plan.keptExperts.length;
    const routerMap = plan.routerMap ?? oneHotRows(plan.keptExperts, E);
    const mergeRows = plan.mergeMatrix ?? oneHotRows(plan.keptExperts, E);
    const outputs = await this.rowOutputs(cache, mergeRows, plan.neuronOrder);
    const k = Math.min(plan.topK ?? cache.moe.topK, rows);
    const gram = new Float64Array(rows * rows);
    const cross = new Float64Array(rows);
    const routedTokens = new Array<number>(rows).fill(0);
    const logits = new Float64Array(rows);
    const chosen = new Int32Array(k);
    const gates = new Float64Array(k);
    for (let t = 0; t < cache.tokens; t++) {
      let max = -Infinity;
      for (let i = 0; i < rows; i++) {
        let l = 0;
        for (let j = 0; j < E; j++) if (routerMap[i][j] !== 0) l += routerMap[i][j] * cache.logits[t * E + j];
        logits[i] = l;
        if (l > max) max = l;
      }
      let slots = k;
      const mixer = cache.moe.sparsemixer;
      if (mixer) {
        // Phi-MoE: sparsemixer's picks and weights instead of a softmax top-k.
        const picks = sparsemixerPicks(logits, rows, () => true, k, mixer.jitterEps);
        slots = picks.experts.length;
        chosen.set(picks.experts);
        gates.set(picks.gates);
      } else {
        let total = 0;
        for (let i = 0; i < rows; i++) total += (logits[i] = Math.exp(logits[i] - max));
        let chosenTotal = 0;
        for (let s = 0; s < k; s++) {
          let best = -1;
          for (let i = 0; i < rows; i++) {
            if (chosen.subarray(0, s).includes(i)) continue;
            if (best < 0 || logits[i] > logits[best]) best = i;
          }
          chosen[s] = best;
          chosenTotal += logits[best];
        }
        for (let s = 0; s < k; s++) gates[s] = logits[chosen[s]] / (normTopKProb ? chosenTotal : total);
      }
      const base = t * H;
      for (let s = 0; s < slots; s++) {
        const i = chosen[s];
        routedTokens[i]++;
        const oi = outputs[i];
        let c = 0;
        for (let h = 0; h < H; h++) c += oi[base + h] * cache.full[base + h];
        cross[i] += gates[s] * c;
        for (let r = 0; r < slots; r++) {
          const j = chosen[r];
          const oj = outputs[j];
          let d = 0;
          for (let h = 0; h < H; h++) d += oi[base + h] * oj[base + h];
          gram[i * rows + j] += gates[s] * gates[r] * d;
        }
      }
    }
    return { gram, cross, routedTokens };
  }

  private cacheOf(layer: number): LayerCache {
    const cache = this.layers.get(layer);
    if (!cache) throw new Error(`layer ${layer}'s expert outputs are not computed: call prepare(${layer}) first`);
    return cache;
  }

  /** Each planned row's output on every calibration token: the cached one for a copy, computed for a merge. */
  private async rowOutputs(cache: LayerCache, mergeRows: number[][], neuronOrder: NeuronOrder | undefined): Promise<Float32Array[]> {
    const outputs: Float32Array[] = [];
    for (const row of mergeRows) {
      const copyOf = row.filter((c) => c !== 0).length === 1 ? row.indexOf(1) : -1;
      if (copyOf >= 0) {
        outputs.push(cache.outputs[copyOf]);
        continue;
      }
      const [merged] = mergeExperts(cache.experts, [row], { mxfp4: cache.mxfp4, neuronOrder });
      outputs.push(await expertOutputs(cache.inputs, cache.tokens, this.hidden, cache.moe, merged));
    }
    return outputs;
  }
}

/** The reference path (tests, no runtime): every expert's SwiGLU in JavaScript, yielding between experts. */
async function javascriptExpertOutputs(spec: ModelSpec, weights: WeightSource, index: number, inputs: Float32Array, tokens: number, signal?: AbortSignal): Promise<Float32Array[]> {
  const layer = spec.layers[index];
  if (layer.kind !== 'moe') throw new Error(`layer ${index} is not a MoE layer`);
  const outputs: Float32Array[] = [];
  for (const expert of layerWeights(spec, weights, layer).experts!) {
    throwIfAborted(signal);
    outputs.push(await expertOutputs(inputs, tokens, spec.hiddenSize, layer.moe, expert));
    // Long layers must not starve the language server's other requests.
    await new Promise((resolve) => setImmediate(resolve));
  }
  return outputs;
}

function allExperts(count: number): boolean[] {
  return new Array<boolean>(count).fill(true);
}

/** One token's routing with only `kept` experts routable: softmax over them, top-k, optional renormalisation. */
class Routing {
  readonly chosen: Int32Array;
  readonly gates: Float64Array;
  /** How many of `chosen` the token routes to (sparsemixer may pick fewer than k). */
  count = 0;
  private readonly probabilities: Float64Array;
  private readonly taken: Uint8Array;

  constructor(
    private readonly numExperts: number,
    k: number,
  ) {
    this.chosen = new Int32Array(k);
    this.gates = new Float64Array(k);
    this.probabilities = new Float64Array(numExperts);
    this.taken = new Uint8Array(numExperts);
  }

  select(cache: LayerCache, kept: boolean[], t: number): void {
    const E = this.numExperts;
    const { probabilities, chosen, taken, gates } = this;
    const mixer = cache.moe.sparsemixer;
    if (mixer) {
      // Phi-MoE: sparsemixer's picks and weights instead of a softmax top-k.
      const picks = sparsemixerPicks(cache.logits.subarray(t * E, (t + 1) * E), E, (e) => kept[e], chosen.length, mixer.jitterEps);
      this.count = picks.experts.length;
      chosen.set(picks.experts);
      gates.set(picks.gates);
      return;
    }
    this.count = chosen.length;
    let max = -Infinity;
    for (let e = 0; e < E; e++) if (kept[e] && cache.logits[t * E + e] > max) max = cache.logits[t * E + e];
    let total = 0;
    for (let e = 0; e < E; e++) {
      probabilities[e] = kept[e] ? Math.exp(cache.logits[t * E + e] - max) : 0;
      total += probabilities[e];
    }
    let chosenTotal = 0;
    taken.fill(0);
    for (let s = 0; s < chosen.length; s++) {
      let best = -1;
      for (let e = 0; e < E; e++) {
        if (!kept[e] || taken[e]) continue;
        if (best < 0 || probabilities[e] > probabilities[best]) best = e;
      }
      chosen[s] = best;
      taken[best] = 1;
      chosenTotal += probabilities[best];
    }
    for (let s = 0; s < chosen.length; s++) gates[s] = probabilities[chosen[s]] / (cache.moe.normTopKProb ? chosenTotal : total);
  }
}

/** The routed block output with only `kept` experts routable. */
function mix(cache: LayerCache, H: number, kept: boolean[]): Float32Array {
  const routing = new Routing(cache.moe.numExperts, Math.min(cache.moe.topK, kept.filter(Boolean).length));
  const y = new Float32Array(cache.tokens * H);
  for (let t = 0; t < cache.tokens; t++) {
    routing.select(cache, kept, t);
    const row = t * H;
    for (let s = 0; s < routing.count; s++) {
      const gate = routing.gates[s];
      const out = cache.outputs[routing.chosen[s]];
      for (let h = 0; h < H; h++) y[row + h] += gate * out[row + h];
    }
  }
  return y;
}

/** Per token, every pair of expert outputs' inner product [T, E, E], each expert's with the full block's output [T, E], and the latter's squared norm [T]. */
function outputProducts(cache: LayerCache, H: number): NonNullable<LayerCache['products']> {
  const E = cache.moe.numExperts;
  const T = cache.tokens;
  const gram = new Float64Array(T * E * E);
  const cross = new Float64Array(T * E);
  const fullNorm = new Float64Array(T);
  for (let t = 0; t < T; t++) {
    const row = t * H;
    for (let e = 0; e < E; e++) {
      const a = cache.outputs[e];
      for (let f = e; f < E; f++) {
        const b = cache.outputs[f];
        let dot = 0;
        for (let h = row; h < row + H; h++) dot += a[h] * b[h];
        gram[(t * E + e) * E + f] = dot;
        gram[(t * E + f) * E + e] = dot;
      }
      let c = 0;
      for (let h = row; h < row + H; h++) c += a[h] * cache.full[h];
      cross[t * E + e] = c;
    }
    let n = 0;
    for (let h = row; h < row + H; h++) n += cache.full[h] * cache.full[h];
    fullNorm[t] = n;
  }
  return { gram, cross, fullNorm };
}

/** One expert's output on every token, as the runtime's graph computes it (GPT-OSS: biases and the clamped SwiGLU). */
async function expertOutputs(x: Float32Array, tokens: number, H: number, moe: MoeSpec, expert: MlpWeights): Promise<Float32Array> {
  const optional = (w: MlpWeights['gateBias']) => (w ? resolveWeight(w) : Promise.resolve(undefined));
  const biases = { gate: await optional(expert.gateBias), up: await optional(expert.upBias), down: await optional(expert.downBias) };
  return swiglu(x, tokens, H, moe.expert.intermediateSize, await resolveWeight(expert.gate), await resolveWeight(expert.up), await resolveWeight(expert.down), biases, moe.clampedSwiglu);
}

/**
 * down(silu(x gate^T) ⊙ (x up^T)) for every token; weights in HF layout [out, in]. Four weight rows
 * share each load of x (about twice as fast as one row at a time in V8). With `clamped` (GPT-OSS) the
 * activation is (clamp(u, ±limit) + 1) · g · sigmoid(alpha · g), g = min(gate, limit); biases are added where given.
 */
function swiglu(
  x: Float32Array,
  tokens: number,
  H: number,
  I: number,
  gate: Float32Array,
  up: Float32Array,
  down: Float32Array,
  bias: { gate?: Float32Array; up?: Float32Array; down?: Float32Array } = {},
  clamped?: ClampedSwiglu,
): Float32Array {
  const out = new Float32Array(tokens * H);
  const activation = new Float64Array(I);
  const plain = (g: number, u: number) => (g / (1 + Math.exp(-g))) * u;
  const clampedSilu = (g: number, u: number) => {
    const gc = Math.min(g, clamped!.limit);
    return (Math.min(Math.max(u, -clamped!.limit), clamped!.limit) + 1) * (gc / (1 + Math.exp(-clamped!.alpha * gc)));
  };
  const activate = clamped ? clampedSilu : plain;
  const silu = bias.gate || bias.up ? (g: number, u: number, i: number) => activate(g + (bias.gate?.[i] ?? 0), u + (bias.up?.[i] ?? 0)) : activate;
  for (let t = 0; t < tokens; t++) {
    const xo = t * H;
    let i = 0;
    for (; i + 4 <= I; i += 4) {
      const w0 = i * H;
      const w1 = w0 + H;
      const w2 = w1 + H;
      const w3 = w2 + H;
      let g0 = 0, g1 = 0, g2 = 0, g3 = 0, u0 = 0, u1 = 0, u2 = 0, u3 = 0;
      for (let h = 0; h < H; h++) {
        const xv = x[xo + h];
        g0 += xv * gate[w0 + h];
        g1 += xv * gate[w1 + h];
        g2 += xv * gate[w2 + h];
        g3 += xv * gate[w3 + h];
        u0 += xv * up[w0 + h];
        u1 += xv * up[w1 + h];
        u2 += xv * up[w2 + h];
        u3 += xv * up[w3 + h];
      }
      activation[i] = silu(g0, u0, i);
      activation[i + 1] = silu(g1, u1, i + 1);
      activation[i + 2] = silu(g2, u2, i + 2);
      activation[i + 3] = silu(g3, u3, i + 3);
    }
    for (; i < I; i++) {
      let g = 0;
      let u = 0;
      for (let h = 0; h < H; h++) {
        g += x[xo + h] * gate[i * H + h];
        u += x[xo + h] * up[i * H + h];
      }
      activation[i] = silu(g, u, i);
    }
    let h = 0;
    for (; h + 4 <= H; h += 4) {
      const w0 = h * I;
      const w1 = w0 + I;
      const w2 = w1 + I;
      const w3 = w2 + I;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (let j = 0; j < I; j++) {
        const a = activation[j];
        s0 += a * down[w0 + j];
        s1 += a * down[w1 + j];
        s2 += a * down[w2 + j];
        s3 += a * down[w3 + j];
      }
      out[xo + h] = s0 + (bias.down?.[h] ?? 0);
      out[xo + h + 1] = s1 + (bias.down?.[h + 1] ?? 0);
      out[xo + h + 2] = s2 + (bias.down?.[h + 2] ?? 0);
      out[xo + h + 3] = s3 + (bias.down?.[h + 3] ?? 0);
    }
    for (; h < H; h++) {
      let sum = bias.down?.[h] ?? 0;
      for (let j = 0; j < I; j++) sum += activation[j] * down[h * I + j];
      out[xo + h] = sum;
    }
  }
  return out;
}
