/**
 * Neuron alignment before merging (UNCURL's default; MC-SMoE aligns the same way): independently trained
 * SwiGLU experts number their intermediate neurons arbitrarily, so averaging expert j into survivor s
 * neuron k with neuron k averages unrelated neurons, and silu(g)·u is not linear, so the average of the
 * weights does not compute the average of the outputs. Renumbering j's neurons (rows of gate and up, the
 * matching columns of down) leaves j's function exactly unchanged, so j is first renumbered to best match
 * s, and the merge then averages matched neurons.
 *
 * The match: neuron k of an expert is the vector [gate_k, up_k, down_{:,k}] (3H values), and the
 * similarity of two neurons is the cosine of their vectors. The renumbering maximises the summed
 * similarity of s's neuron k and j's neuron order[k] over all permutations: a linear assignment, solved
 * exactly by the Hungarian algorithm (the `munkres` package) on the cost 1 − cosine.
 *
 * Cost: the similarity takes I² · 3H multiply-adds and the assignment O(I³) per merged expert. Measured
 * on the shared 2-core machine under load (so pessimistic): I = 320, H = 128 (the Mixtral demo) 0.3 to 1 s
 * of similarity and 0.2 s of assignment per merged expert; I = 1024, H = 256 6.5 s of assignment. Past
 * `MAX_ALIGNED_NEURONS` a layer merges without alignment and the plan says why; at the cap, with
 * H = 4096, the similarity alone is 2·10^11 multiply-adds per merged expert, minutes in the editor's
 * process (Mixtral-8x7B's I = 14336 would be 2.5·10^12 and an assignment far too large). The result is
 * a plan field, `neuronOrder`, that every consumer of a merge applies (runtime/neuronOrder.ts).
 */
import munkres from 'munkres';
import type { NeuronOrder } from '../../runtime/neuronOrder';
import type { PlanLayer } from '../planFile';
import { throwIfAborted } from '../statistics';

/** Above this many intermediate neurons per expert a layer merges unaligned (the assignment is O(I³)). */
export const MAX_ALIGNED_NEURONS = 4096;

/** One expert's weights in Hugging Face layout: gate and up [I, H], down [H, I], row-major. */
export interface ExpertMatrices {
  gate: Float32Array;
  up: Float32Array;
  down: Float32Array;
}

/** What alignment reads of the model. */
export interface AlignmentSource {
  hidden: number;
  intermediate(layer: number): number;
  /** Why `layer`'s experts cannot be renumbered (fused or quantised experts); undefined when they can. */
  refusal(layer: number): string | undefined;
  expert(layer: number, id: number): Promise<ExpertMatrices>;
  /** The layer's router weight [E, H], row-major (EEP chooses which kept expert each merged expert is aligned to by it). */
  router?(layer: number): Promise<Float32Array>;
}

export interface AlignmentRecord {
  /** Layers merged without alignment, with the reason. */
  neuronAlignmentSkipped?: Record<number, string>;
}

/** Each neuron's [gate_k, up_k, down_{:,k}] as a unit vector, row k of an [I, 3H] matrix. */
function neuronVectors(expert: ExpertMatrices, I: number, H: number): Float64Array {
  const width = 3 * H;
  const vectors = new Float64Array(I * width);
  for (let k = 0; k < I; k++) {
    const row = k * width;
    for (let h = 0; h < H; h++) {
      vectors[row + h] = expert.gate[k * H + h];
      vectors[row + H + h] = expert.up[k * H + h];
      vectors[row + 2 * H + h] = expert.down[h * I + k];
    }
    let norm = 0;
    for (let x = row; x < row + width; x++) norm += vectors[x] * vectors[x];
    const scale = norm > 0 ? 1 / Math.sqrt(norm) : 0;
    for (let x = row; x < row + width; x++) vectors[x] *= scale;
  }
  return vectors;
}

/** similarity[k][m]: the cosine of neuron k of `a` and neuron m of `b`. */
export function neuronSimilarity(a: ExpertMatrices, b: ExpertMatrices, I: number, H: number): Float64Array[] {
  const va = neuronVectors(a, I, H);
  const vb = neuronVectors(b, I, H);
  const width = 3 * H;
  return Array.from({ length: I }, (_, k) => {
    const row = new Float64Array(I);
    const u = va.subarray(k * width, (k + 1) * width);
    for (let m = 0; m < I; m++) {
      const v = vb.subarray(m * width, (m + 1) * width);
      let dot = 0;
      for (let x = 0; x < width; x++) dot += u[x] * v[x];
      row[m] = dot;
    }
    return row;
  });
}

/** The permutation maximising Σ_k similarity[k][order[k]] (Hungarian algorithm, exact). */
export function bestAssignment(similarity: readonly Float64Array[]): number[] {
  const n = similarity.length;
  const cost = similarity.map((row) => Float64Array.from(row, (s) => 1 - s));
  const order = new Array<number>(n).fill(-1);
  for (const [k, m] of munkres(cost)) order[k] = m;
  if (order.includes(-1)) throw new Error('neuron alignment: the assignment left a neuron unmatched');
  return order;
}

/** The renumbering of `member` (position k holds its neuron order[k]) that best matches `anchor`'s neurons. */
export function alignNeurons(anchor: ExpertMatrices, member: ExpertMatrices, I: number, H: number): number[] {
  return bestAssignment(neuronSimilarity(anchor, member, I, H));
}

/** Why `layer`'s merges go unaligned (the source refuses, or the assignment would be too large); undefined when they can be aligned. */
export function alignmentRefusal(source: AlignmentSource, layer: number): string | undefined {
  const I = source.intermediate(layer);
  return source.refusal(layer) ?? (I > MAX_ALIGNED_NEURONS ? `experts have ${I} intermediate neurons, more than the ${MAX_ALIGNED_NEURONS} an exact assignment is computed for` : undefined);
}

/** `alignNeurons(anchor, member)` of one layer's experts, read from a source. */
export type PairAlignment = (layer: number, anchor: number, member: number) => Promise<number[]>;

const pairAlignments = new WeakMap<AlignmentSource, PairAlignment>();

/**
 * The source's pair alignments, each computed once and then remembered (only the orders, I numbers a
 * pair, never the weights, which on a real model are gigabytes a layer). One memory per source, so every
 * search given the same source (EEP's candidates, and the quality tool's searches over calibrations and
 * seeds) shares it: the alignment depends on the weights alone.
 */
export function pairAlignment(source: AlignmentSource): PairAlignment {
  let align = pairAlignments.get(source);
  if (!align) {
    const known = new Map<string, Promise<number[]>>();
    align = (layer, anchor, member) => {
      const key = `${layer} ${anchor} ${member}`;
      let order = known.get(key);
      if (!order) {
        order = (async () => {
          const computed = alignNeurons(await source.expert(layer, anchor), await source.expert(layer, member), source.intermediate(layer), source.hidden);
          // A big layer must not starve the language server's other requests.
          await new Promise((resolve) => setImmediate(resolve));
          return computed;
        })();
        order.catch(() => known.delete(key));
        known.set(key, order);
      }
      return order;
    };
    pairAlignments.set(source, align);
  }
  return align;
}

/**
 * Neuron orders for every merge of the plan's layers: in each merge row, every expert but the anchor
 * (the row's kept expert, UNCURL's survivor) is renumbered to match the anchor. Each expert is merged into
 * one row at most (UNCURL's clusters partition the experts). Orders that change nothing are left out.
 */
export async function alignMerges(layers: PlanLayer[], source: AlignmentSource, signal?: AbortSignal): Promise<{ layers: PlanLayer[]; record: AlignmentRecord }> {
  const skipped: Record<number, string> = {};
  const aligned: PlanLayer[] = [];
  const align = pairAlignment(source);
  for (const layer of layers) {
    const merges = (layer.mergeMatrix ?? []).map((row, i) => ({ anchor: layer.keptExperts[i], members: row.flatMap((c, j) => (c !== 0 && j !== layer.keptExperts[i] ? [j] : [])) })).filter((m) => m.members.length > 0);
    if (merges.length === 0) {
      aligned.push(layer);
      continue;
    }
    const refusal = alignmentRefusal(source, layer.layer);
    if (refusal) {
      skipped[layer.layer] = refusal;
      aligned.push(layer);
      continue;
    }
    const neuronOrder: NeuronOrder = {};
    for (const { anchor, members } of merges) {
      for (const member of members) {
        throwIfAborted(signal);
        if (neuronOrder[member]) throw new Error(`layer ${layer.layer}: expert ${member} is merged into more than one row; one neuron order cannot serve both`);
        const order = await align(layer.layer, anchor, member);
        if (order.some((m, k) => m !== k)) neuronOrder[member] = order;
      }
    }
    aligned.push(Object.keys(neuronOrder).length ? { ...layer, neuronOrder } : layer);
  }
  return { layers: aligned, record: Object.keys(skipped).length ? { neuronAlignmentSkipped: skipped } : {} };
}
