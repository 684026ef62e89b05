import assert from 'node:assert/strict';
import { test } from 'node:test';
import { adaptiveGatingWithinQuality, thresholdForSingleExpertShare } from '../../../server/src/plan/methods/adaptiveGating';
import { symmetricEigen } from '../../../server/src/plan/methods/linalg';
import { naeePruning } from '../../../server/src/plan/methods/naee';
import { frequencyPruning, randomPruning, reapPruning, softCountPruning } from '../../../server/src/plan/methods/ranking';
import { uncurlMerging } from '../../../server/src/plan/methods/uncurl';
import { UserError } from '../../../server/src/errors';
import type { LayerStatistics } from '../../../server/src/plan/statistics';

// Expert 2 is never routed to: zero tokens, zero gate mass, zero REAP saliency.
const neverRouted: LayerStatistics = {
  layer: 0,
  tokenCount: [50, 30, 0, 20],
  softCount: [20, 12, 0, 8],
  reapScore: [1.5, 0.9, 0, 0.4],
};

test('frequency, soft count and REAP drop the expert never routed to first', () => {
  for (const method of [frequencyPruning, softCountPruning, reapPruning]) {
    assert.deepEqual(method([neverRouted], 3), [{ layer: 0, keptExperts: [0, 1, 3] }]);
    assert.deepEqual(method([neverRouted], 2), [{ layer: 0, keptExperts: [0, 1] }]);
  }
});

test('per-layer targets and ties resolved towards the lower id', () => {
  const tied: LayerStatistics = { layer: 5, tokenCount: [1, 1, 1, 1], softCount: [0, 0, 0, 0] };
  assert.deepEqual(frequencyPruning([tied, { ...neverRouted, layer: 6 }], { 5: 2, 6: 1 }), [
    { layer: 5, keptExperts: [0, 1] },
    { layer: 6, keptExperts: [0] },
  ]);
  assert.throws(() => frequencyPruning([tied], 5), /not in 1\.\.4/);
  assert.throws(() => reapPruning([tied], 2), /reapScore/);
});

test('random pruning is reproducible from its seed and keeps distinct sorted ids', () => {
  const layers = [{ layer: 0, numExperts: 8 }, { layer: 1, numExperts: 8 }];
  const a = randomPruning(layers, 4, 42);
  assert.deepEqual(a, randomPruning(layers, 4, 42));
  assert.notDeepEqual(a, randomPruning(layers, 4, 43));
  for (const { keptExperts } of a) {
    assert.equal(new Set(keptExperts).size, 4);
    assert.deepEqual(keptExperts, [...keptExperts].sort((x, y) => x - y));
  }
});

test('NAEE exhaustive search finds the planted best subset; greedy agrees on an easy case', async () => {
  const planted = [1, 4, 6];
  // Each planted expert missing costs 10, every extra expert costs its id / 100: a unique minimum at the planted set.
  const layerError = async (_layer: number, kept: number[]) =>
    planted.filter((id) => !kept.includes(id)).length * 10 + kept.filter((id) => !planted.includes(id)).reduce((s, id) => s + id / 100, 0);
  const evaluated: string[] = [];
  const exhaustive = await naeePruning({ layers: [{ layer: 3, numExperts: 8 }], target: 3, layerError, onProgress: (p) => evaluated.push(`${p.search}:${p.evaluations}`) });
  assert.deepEqual(exhaustive, [{ layer: 3, keptExperts: planted }]);
  assert.deepEqual(evaluated, ['exhaustive:56']); // C(8, 3)
  const greedy = await naeePruning({ layers: [{ layer: 3, numExperts: 8 }], target: 3, layerError, exhaustiveLimit: 10, onProgress: (p) => evaluated.push(`${p.search}:${p.evaluations}`) });
  assert.deepEqual(greedy, exhaustive);
  assert.equal(evaluated[1], 'greedy:30'); // 8 + 7 + 6 + 5 + 4 candidate removals
});

test('NAEE stops when aborted', async () => {
  const controller = new AbortController();
  controller.abort(new Error('cancelled'));
  await assert.rejects(naeePruning({ layers: [{ layer: 0, numExperts: 4 }], target: 2, layerError: async () => 0, signal: controller.signal }), /cancelled/);
});

test('the Jacobi solver recovers eigenpairs of a symmetric matrix', () => {
  const matrix = [[2, 1, 0], [1, 2, 1], [0, 1, 2]];
  const { values, vectors } = symmetricEigen(matrix);
  assert.deepEqual(values.map((v) => +v.toFixed(9)), [2 - Math.SQRT2, 2, 2 + Math.SQRT2].map((v) => +v.toFixed(9)));
  for (const [k, vector] of vectors.entries()) {
    const product = matrix.map((row) => row.reduce((s, x, j) => s + x * vector[j], 0));
    product.forEach((x, i) => assert.ok(Math.abs(x - values[k] * vector[i]) < 1e-9));
  }
});

test('UNCURL clusters experts with identical router logits and merges them by usage', () => {
  // Router logit columns over 4 tokens; experts 1 and 3 are identical, the rest point elsewhere.
  const columns = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]];
  const cosine = columns.map((a) => columns.map((b) => a.reduce((s, x, i) => s + x * b[i], 0)));
  const statistics: LayerStatistics = { layer: 2, tokenCount: [10, 30, 10, 10, 10], softCount: [0, 0, 0, 0, 0], routerLogitSimilarity: cosine };
  const [plan] = uncurlMerging([statistics], 4, { seed: 7 });
  assert.deepEqual(plan.keptExperts, [0, 1, 2, 4]);
  assert.deepEqual(plan.mergeMatrix, [
    [1, 0, 0, 0, 0],
    [0, 0.75, 0, 0.25, 0], // 30 and 10 tokens: usage-weighted into expert 1, the more used
    [0, 0, 1, 0, 0],
    [0, 0, 0, 0, 1],
  ]);
  assert.deepEqual(plan.routerMap, [[1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 1]]);
  assert.deepEqual(uncurlMerging([statistics], 4, { seed: 7 }), [plan]);
});

test('UNCURL on centred logits keeps apart the experts a task splits its tokens between', () => {
  // Logit columns over 4 tokens. Experts 0 and 1 get high logits on every token (the task's experts) but
  // prefer alternate tokens; 2 and 3 get low logits everywhere, with the same preferences as 0 and 1.
  const columns = [[5, 4, 5, 4], [4, 5, 4, 5], [-3, -4, -3, -4], [-4, -3, -4, -3]];
  const centred = columns.map((c) => c.map((x) => x - c.reduce((s, v) => s + v, 0) / c.length));
  const cosineOf = (cols: number[][]) => cols.map((a) => cols.map((b) => a.reduce((s, x, i) => s + x * b[i], 0) / Math.hypot(...a) / Math.hypot(...b)));
  const statistics: LayerStatistics = { layer: 0, tokenCount: [40, 40, 1, 1], softCount: [0, 0, 0, 0], routerLogitSimilarity: cosineOf(columns), routerLogitCorrelation: cosineOf(centred) };

  // The paper's cosine: 0 and 1 look alike (0.98) and are merged, the task's two experts averaged.
  const [byCosine] = uncurlMerging([statistics], 2, { seed: 3 });
  assert.ok(byCosine.mergeMatrix!.some((row) => row[0] > 0 && row[1] > 0), JSON.stringify(byCosine.mergeMatrix));

  // Correlation: 0 goes with 2 and 1 with 3; each task expert survives, its rarely used partner merged in by usage.
  const [byCorrelation] = uncurlMerging([statistics], 2, { seed: 3, similarity: 'correlation' });
  assert.deepEqual(byCorrelation.keptExperts, [0, 1]);
  assert.deepEqual(byCorrelation.mergeMatrix, [
    [40 / 41, 0, 1 / 41, 0],
    [0, 40 / 41, 0, 1 / 41],
  ]);

  // A profile written before correlations existed: a clear error, not the cosine in disguise.
  const { routerLogitCorrelation: _, ...older } = statistics;
  assert.throws(() => uncurlMerging([older], 2, { seed: 3, similarity: 'correlation' }), (error) => error instanceof UserError && /Profile the calibration data again/.test(error.message));
});

test('adaptive gating interpolates the threshold for a target single-expert share', () => {
  const curve = { threshold: [0, 0.1, 0.2, 0.4], singleExpertShare: [0.9, 0.6, 0.4, 0.1] };
  // 0.5 lies between 0.6 (T = 0.1) and 0.4 (T = 0.2), halfway: T = 0.15.
  assert.ok(Math.abs(thresholdForSingleExpertShare(curve, 0.5) - 0.15) < 1e-12);
  // 0.2 between 0.4 (T = 0.2) and 0.1 (T = 0.4): a third of the way: T = 0.2 + 0.2 · (0.2 / 0.3).
  assert.ok(Math.abs(thresholdForSingleExpertShare(curve, 0.2) - (0.2 + 0.2 * (2 / 3))) < 1e-12);
  assert.equal(thresholdForSingleExpertShare(curve, 0.6), 0.1);
  assert.equal(thresholdForSingleExpertShare(curve, 0.95), 0);
  assert.equal(thresholdForSingleExpertShare(curve, 0.05), 0.4);
});

test('adaptive gating within a quality bound takes the smallest threshold that keeps quality', async () => {
  const calls: number[] = [];
  const quality = async (layer: number, t: number) => {
    calls.push(t);
    return layer === 0 ? 1 - 0.5 / (1 + 10 * t) : 0; // layer 1 never reaches the bound
  };
  const result = await adaptiveGatingWithinQuality({ layers: [0, 1], candidates: [0.4, 0, 0.1, 0.2, 0.8], quality, minimumQuality: 0.8 });
  // 1 - 0.5 / (1 + 10t) ≥ 0.8 ⟺ t ≥ 0.15: the smallest candidate is 0.2.
  assert.deepEqual(result, [{ layer: 0, adaptiveThreshold: 0.2 }, { layer: 1 }]);
  assert.ok(calls.length <= 6);
});
