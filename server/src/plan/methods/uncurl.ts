/**
 * UNCURL (Sarkar et al., 2024, "Revisiting SMoE Language Models by Evaluating Inefficiencies with Task
 * Specific Expert Pruning"): per layer, cluster experts whose router logits behave alike on the task's
 * calibration data, and merge each cluster into one expert.
 *
 * Similarity S_ij = (1 + cos_ij) / 2 of the experts' router-logit columns; spectral clustering (Ng, Jordan
 * & Weiss): the normalised Laplacian L = I - D^-1/2 S D^-1/2, its k smallest eigenvectors as an embedding,
 * rows normalised to unit length, k-means (k-means++ seeded from the plan's seed, best of several restarts).
 *
 * In each cluster the most-used expert stays and the others merge into it, weighted by usage:
 * W_EM row = tokenCount_j / Σ_cluster tokenCount (uniform when the cluster saw no token). The router
 * keeps the surviving expert's own row (one-hot W_RM): no router is retrained, so tokens that chose a
 * merged-away expert now reach its cluster only when the survivor's logit wins, which is what UNCURL's
 * logit similarity makes likely.
 *
 * Neuron alignment first (our default, `neuronAlignment: false` turns it off; neuronAlignment.ts): before
 * expert j is averaged into its survivor s, j's intermediate neurons are renumbered (rows of gate and up,
 * the matching columns of down) to best match s's, by an exact assignment on the cosine of each neuron's
 * [gate row, up row, down column]. Renumbering leaves j's function unchanged, so the plan stays the
 * paper's merge of the same experts with the same weights; only which neuron is averaged with which
 * changes. The permutations are the plan's `neuronOrder`, which the runtime and both exports apply.
 * Layers whose experts cannot be renumbered (fused or MXFP4/FP8 experts) or whose assignment would be too
 * large (more than 4096 neurons) merge unaligned, and the plan records why (`neuronAlignmentSkipped`).
 * Measured (notes/uncurl-neuron-alignment.md, held-out loss, own calibration, mean of 3 seeds) on the
 * Mixtral demo keeping 4 of 8: arithmetic 3.794 unaligned → 1.957 aligned (random 2.811, frequency
 * 1.286), records 2.670 → 1.607 (random 3.333, frequency 1.200), code 5.125 → 5.094, prose 5.403 → 5.397;
 * on the OLMoE demo (8 of 16) code 5.544 → 5.225 (random 5.405), prose 6.034 → 5.677 (5.708), arithmetic
 * 2.347 → 2.022 (2.251), records 2.363 → 1.634 (3.169). Aligned UNCURL beats random on every domain of
 * both models and still trails frequency pruning (by 0.28 to 0.80 nats on OLMoE).
 *
 * Where merging unaligned experts fails (why alignment is the default), measured on the OLMoE demo
 * (demo/models-extra/olmoe, 8 of 16 kept, calibrated on code, before alignment existed): averaging two
 * independently trained SwiGLU experts averages unrelated intermediate neurons, and silu(g)·u is not
 * linear, so the merged expert does not compute the average
 * of its members' outputs: its output is smaller and points elsewhere. Output compensation's least-squares
 * factors show it: close to 1 for kept experts that merged nothing (0.995 to 1.01 in layer 2), but 4.8, 8.3
 * and −1.9 for merged ones in layer 0 and −14.7 in layer 1, i.e. the merged expert's output is nearly
 * orthogonal to what its cluster computed, and only a large or negative factor lines it up on average.
 * Pruning (frequency) on the same data needs factors of 0.75 to 1.18. So the loss is in the merge itself,
 * before any routing question: UNCURL's clusters are right to be alike in *routing*, but alike routing
 * does not make experts' weights averageable without alignment. `repairs: ["outputCompensation"]` after
 * UNCURL ("UNCURL + compensation") recovers part of it (held-out code loss 5.435 → 5.092, full 4.821).
 * Measured directly (demo/README.md, "Where UNCURL's merge fails"): the same clusters and survivors with the
 * other members dropped instead of averaged in are better on every OLMoE domain by 0.21 to 0.63 nats, and
 * those survivors alone are still 0.13 to 0.91 nats behind frequency's top 8, because one expert per
 * cluster is kept and router-logit similarity clusters exactly the experts a task uses together.
 *
 * `similarity: 'correlation'` (our option, not the paper's) clusters on the Pearson correlation of the
 * logit columns instead, i.e. the cosine after centring each expert's logits on their mean. The raw
 * cosine is dominated by that mean: on a task that routes almost every token to the same two or three
 * experts, all of them get high logits on every token, look alike, and are merged into one, which on the
 * demo model's arithmetic costs more than random pruning. Centred, experts that split the task's tokens
 * between them anti-correlate and stay apart. On the demo it fixes arithmetic and records and does a
 * little worse on code and prose (demo/README.md), so the paper's cosine stays the default.
 */
import { UserError } from '../../errors';
import type { PlanLayer } from '../planFile';
import { SeededRandom } from '../prng';
import { oneHotRows } from '../runtimeConversion';
import { type ExpertTarget, type LayerStatistics, targetFor } from '../statistics';
import { kMeans, symmetricEigen } from './linalg';

export const UNCURL_SIMILARITIES = ['cosine', 'correlation'] as const;
export type UncurlSimilarity = (typeof UNCURL_SIMILARITIES)[number];

/** What a plan gets when it names no restarts or similarity. */
export const UNCURL_DEFAULTS = { restarts: 10, similarity: 'cosine', neuronAlignment: true } as const satisfies { restarts: number; similarity: UncurlSimilarity; neuronAlignment: boolean };

export interface UncurlOptions {
  seed: number;
  /** k-means restarts per layer. */
  restarts?: number;
  /** What S_ij = (1 + x) / 2 is built from: the logit columns' cosine (the paper, default) or correlation. */
  similarity?: UncurlSimilarity;
}

/** Cluster label per expert, labels 0..k-1 numbered by each cluster's lowest expert id. */
export function spectralClusters(cosine: number[][], k: number, random: SeededRandom, restarts: number): number[] {
  const n = cosine.length;
  const similarity = cosine.map((row) => row.map((c) => (1 + c) / 2));
  const degree = similarity.map((row) => row.reduce((s, x) => s + x, 0));
  const scale = degree.map((d) => (d > 0 ? 1 / Math.sqrt(d) : 0));
  const laplacian = similarity.map((row, i) => row.map((s, j) => (i === j ? 1 : 0) - scale[i] * s * scale[j]));
  const { vectors } = symmetricEigen(laplacian);
  const embedding = Array.from({ length: n }, (_, i) => {
    const row = vectors.slice(0, k).map((v) => v[i]);
    const norm = Math.hypot(...row);
    return norm > 0 ? row.map((x) => x / norm) : row;
  });
  const labels = kMeans(embedding, k, random, restarts);
  const renumber = new Map<number, number>();
  return labels.map((label) => {
    if (!renumber.has(label)) renumber.set(label, renumber.size);
    return renumber.get(label)!;
  });
}

export function uncurlMerging(statistics: LayerStatistics[], target: ExpertTarget, options: UncurlOptions): PlanLayer[] {
  const random = new SeededRandom(options.seed);
  return statistics.map((s) => {
    const similarity = (options.similarity ?? UNCURL_DEFAULTS.similarity) === 'correlation' ? s.routerLogitCorrelation : s.routerLogitSimilarity;
    if (!similarity && options.similarity === 'correlation') {
      // The user's data, not a defect: a saved profile from before correlations were recorded.
      throw new UserError(`Layer ${s.layer}: UNCURL with "similarity": "correlation" needs the router logits' correlation, which profiles written by earlier versions do not have. Profile the calibration data again.`);
    }
    if (!similarity) throw new Error(`layer ${s.layer}: UNCURL needs routerLogitSimilarity statistics`);
    const numExperts = s.tokenCount.length;
    const k = targetFor(target, s.layer, numExperts);
    const labels = spectralClusters(similarity, k, random, options.restarts ?? UNCURL_DEFAULTS.restarts);
    const clusters = Array.from({ length: k }, (_, c) => labels.flatMap((label, id) => (label === c ? [id] : [])));
    const survivors = clusters.map((members) => members.reduce((best, id) => (s.tokenCount[id] > s.tokenCount[best] ? id : best)));
    const order = survivors.map((_, c) => c).sort((a, b) => survivors[a] - survivors[b]);
    const keptExperts = order.map((c) => survivors[c]);
    const mergeMatrix = order.map((c) => {
      const members = clusters[c];
      const usage = members.reduce((sum, id) => sum + s.tokenCount[id], 0);
      const row = new Array<number>(numExperts).fill(0);
      for (const id of members) row[id] = usage > 0 ? s.tokenCount[id] / usage : 1 / members.length;
      return row;
    });
    return { layer: s.layer, keptExperts, mergeMatrix, routerMap: oneHotRows(keptExperts, numExperts) };
  });
}
