import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { type EepProgress, eepSearch, significantlyBetter } from '../../../server/src/plan/methods/eep';
import type { PlanLayer } from '../../../server/src/plan/planFile';
import { eepProgressMessage } from '../../../server/src/plan/run/generatePlanFile';
import { oneHotRows } from '../../../server/src/plan/runtimeConversion';
import type { RuntimePlan } from '../../../server/src/runtime/runtimePlan';

const planted = { 0: [3, 5], 1: [0, 6] } as Record<number, number[]>;
const layers = [{ layer: 0, numExperts: 8 }, { layer: 1, numExperts: 8 }];

/** Minus the planted experts each layer misses; an async delay that varies per call must not matter. */
function plantedFitness(delays: boolean) {
  let call = 0;
  return async (runtime: RuntimePlan, candidate: PlanLayer[]) => {
    if (delays) await sleep((call++ * 7) % 3);
    assert.ok(runtime.layers[0].keptExperts, 'prune-phase candidates reach the runtime as masks');
    return 0 - candidate.reduce((missed, l) => missed + planted[l.layer].filter((id) => !l.keptExperts.includes(id)).length, 0);
  };
}

test('EEP pruning finds the planted optimum and is reproducible from its seed', async () => {
  const progress: EepProgress[] = [];
  const options = { layers, target: 2, phases: ['prune' as const], populationSize: 8, eliteSize: 2, generations: 40, budget: 400, seed: 11 };
  const first = await eepSearch({ ...options, fitness: plantedFitness(true), onGeneration: (p) => progress.push(p) });
  assert.equal(first.fitness, 0);
  assert.deepEqual(first.layers, [{ layer: 0, keptExperts: [3, 5] }, { layer: 1, keptExperts: [0, 6] }]);
  assert.ok(first.evaluations <= 400);
  for (let i = 1; i < progress.length; i++) assert.ok(progress[i].bestFitness >= progress[i - 1].bestFitness, 'elitism never loses the best');
  const again = await eepSearch({ ...options, fitness: plantedFitness(false) });
  assert.deepEqual(again.layers, first.layers);
  assert.deepEqual(again.history, first.history);
});

test('EEP merging starts from the pruning best and improves a continuous fitness', async () => {
  // Reward a merge matrix that blends a little of expert 1 into the kept expert 0.
  const wanted = [0.8, 0.2, 0, 0];
  // A pruned candidate scores as its identity merge does (they compute the same function).
  const fitness = async (runtime: RuntimePlan, candidate: PlanLayer[]) => {
    const layer = candidate[0];
    if (layer.mergeMatrix) assert.ok(runtime.layers[0].mergeMatrix && runtime.layers[0].routerMap);
    const merge = layer.mergeMatrix ?? oneHotRows(layer.keptExperts, 4);
    return -merge[0].reduce((s, x, j) => s + (x - wanted[j]) ** 2, 0) - 1;
  };
  const result = await eepSearch({ layers: [{ layer: 0, numExperts: 4 }], target: 1, fitness, populationSize: 10, eliteSize: 3, generations: 30, budget: 2000, seed: 3, sigma: 0.1, mutationRate: 0.5 });
  const merge = result.history.filter((h) => h.phase === 'merge');
  // The one-hot start scores -(0.2² + 0.2²) - 1 = -1.08; phase 2 carries it over, so it is the floor.
  assert.equal(result.history.filter((h) => h.phase === 'prune').at(-1)!.bestFitness, -1.08);
  assert.ok(merge[0].bestFitness >= -1.08);
  assert.deepEqual(result.pruned, { layers: [{ layer: 0, keptExperts: [0] }], fitness: -1.08 });
  assert.ok(result.fitness > merge[0].bestFitness, `merging improved ${merge[0].bestFitness} → ${result.fitness}`);
  assert.deepEqual(result.layers[0].keptExperts, [0]);
});

/** A rugged fitness: a per-layer score table with an interaction term, so mutations rarely help. */
function ruggedFitness(numExperts: number) {
  return async (_runtime: RuntimePlan, candidate: PlanLayer[]) => {
    let total = 0;
    for (const l of candidate) {
      const kept = l.keptExperts;
      for (const e of kept) total += Math.sin(1 + e * 2.3 + l.layer * 0.7);
      for (let a = 0; a < kept.length; a++) for (let b = a + 1; b < kept.length; b++) total += 0.3 * Math.cos(kept[a] * numExperts + kept[b] + l.layer);
    }
    if (candidate.some((l) => l.mergeMatrix)) {
      // Merging may help a little: reward a small blend of the expert after each kept one.
      for (const l of candidate) l.mergeMatrix!.forEach((row, i) => (total -= (row[(l.keptExperts[i] + 1) % numExperts] - 0.1) ** 2 - 0.01));
    }
    return total;
  };
}

test('EEP seeded with known plans returns at least the best seed\'s fitness, reproducibly', async () => {
  const shapes = [{ layer: 0, numExperts: 8 }, { layer: 1, numExperts: 8 }, { layer: 2, numExperts: 8 }];
  const fitness = ruggedFitness(8);
  const seeds: PlanLayer[][] = [
    shapes.map((s) => ({ layer: s.layer, keptExperts: [0, 1, 2, 3] })),
    shapes.map((s) => ({ layer: s.layer, keptExperts: [4, 5, 6, 7] })),
    shapes.map((s) => ({ layer: s.layer, keptExperts: [1, 3, 5, 7] })),
  ];
  const seedFitness = await Promise.all(seeds.map((plan) => fitness({ layers: {} }, plan)));
  for (const budget of [seeds.length, 20, 200]) {
    for (const phases of [['prune'], ['prune', 'merge'], ['merge']] as const) {
      const options = { layers: shapes, target: 4, fitness, initial: seeds, phases: [...phases], populationSize: 8, eliteSize: 2, generations: 10, budget, seed: 5 };
      const result = await eepSearch(options);
      for (const value of seedFitness) assert.ok(result.fitness >= value, `${phases.join('+')}, budget ${budget}: ${result.fitness} < seed ${value}`);
      if (result.pruned) assert.ok(result.fitness >= result.pruned.fitness, 'merging never ends below its prune-only start');
      assert.ok(result.evaluations <= budget);
      const again = await eepSearch(options);
      assert.deepEqual(again.layers, result.layers);
      assert.deepEqual(again.history, result.history);
    }
  }
});

test('EEP returns the pruned plan when no merge beats it', async () => {
  // Any departure from one-hot rows costs fitness, so phase 2 keeps its identity-merge start.
  const fitness = async (_runtime: RuntimePlan, candidate: PlanLayer[]) => {
    const keep = candidate[0].keptExperts.includes(2) ? 1 : 0;
    const merge = candidate[0].mergeMatrix ?? oneHotRows(candidate[0].keptExperts, 4);
    return keep - merge.flat().reduce((s, x) => s + Math.abs(x - Math.round(x)), 0);
  };
  const result = await eepSearch({ layers: [{ layer: 0, numExperts: 4 }], target: 2, fitness, initial: [[{ layer: 0, keptExperts: [0, 1] }]], populationSize: 6, eliteSize: 2, generations: 5, budget: 60, seed: 2 });
  assert.equal(result.fitness, 1);
  assert.equal(result.layers[0].routerMap, undefined);
  assert.ok(result.layers[0].keptExperts.includes(2));
});

test('EEP honours its budget and its abort signal', async () => {
  const budgeted = await eepSearch({ layers, target: 2, fitness: plantedFitness(false), phases: ['prune'], budget: 12, populationSize: 8, seed: 1 });
  assert.equal(budgeted.evaluations, 12);
  const controller = new AbortController();
  const fitness = async () => {
    controller.abort(new Error('cancelled'));
    return 0;
  };
  await assert.rejects(eepSearch({ layers, target: 2, fitness, seed: 1, signal: controller.signal }), /cancelled/);
});

test('A candidate replaces the plan only by a significant paired gain', () => {
  const zeros = { fitness: 0, samples: [0, 0, 0, 0] };
  // Differences 1, 1, 1, 1.2: mean 1.05, sample sd 0.1, so the sum 4.2 has standard error 0.2 (√4 × 0.1).
  const steady = { fitness: 4.2, samples: [1, 1, 1, 1.2] };
  assert.equal(significantlyBetter(steady, zeros, 20.9), true, 'the gain is 21 standard errors');
  assert.equal(significantlyBetter(steady, zeros, 21.1), false);
  // One sample carries the whole gain: differences 4, 0, 0, 0 have sd 2, standard error 4, sum 4.
  const lucky = { fitness: 4, samples: [4, 0, 0, 0] };
  assert.equal(significantlyBetter(lucky, zeros, 1), false);
  assert.equal(significantlyBetter(lucky, zeros, 0), true, 'significance 0 takes any gain');
  assert.equal(significantlyBetter({ fitness: 1 }, zeros, 2), true, 'without per-sample scores any gain counts');
  assert.equal(significantlyBetter(zeros, steady, 0), false, 'a loss is never a gain');
});

test('EEP keeps its first seed against a gain carried by one calibration sample, and takes a steady one', async () => {
  // One layer of 4 experts keeping 1; ten calibration samples. Expert 0 is the seed; expert 1 wins
  // on the mean only through sample 0; expert 2 loses everywhere; expert 3 is set per case.
  const shares = (expert3: number[]): Record<number, number[]> => ({
    0: new Array(10).fill(0),
    1: [0.5, ...new Array(9).fill(0)],
    2: new Array(10).fill(-0.1),
    3: expert3,
  });
  const search = (table: Record<number, number[]>, significance?: number) => eepSearch({
    layers: [{ layer: 0, numExperts: 4 }], target: 1, phases: ['prune'], initial: [[{ layer: 0, keptExperts: [0] }]],
    populationSize: 6, eliteSize: 2, generations: 5, budget: 40, seed: 4, ...(significance === undefined ? {} : { significance }),
    fitness: async (_runtime, candidate) => {
      const samples = table[candidate[0].keptExperts[0]];
      return { value: samples.reduce((a, b) => a + b, 0), samples };
    },
  });
  const noisy = shares(new Array(10).fill(-0.2));
  const kept = await search(noisy);
  assert.deepEqual(kept.layers, [{ layer: 0, keptExperts: [0] }]);
  assert.equal(kept.fitness, 0);
  const last = kept.history.at(-1)!;
  assert.deepEqual([last.bestFitness, last.candidateFitness], [0, 0.5], 'the progress shows the plan and the candidate that led it only by noise');
  assert.match(eepProgressMessage(last), /best fitness 0\.0000; a candidate reached 0\.5000, not significantly better/);
  assert.deepEqual((await search(noisy, 0)).layers, [{ layer: 0, keptExperts: [1] }], 'significance 0 takes the mean winner');
  const steady = shares(Array.from({ length: 10 }, (_, i) => 0.01 + 0.001 * (i % 2)));
  assert.deepEqual((await search(steady)).layers, [{ layer: 0, keptExperts: [3] }]);
});

test('EEP\'s budget is its length: the phases share it and spend all of it; generations only cap them', async () => {
  // A wide search space (two layers, 8 of 16) and a fitness that rarely ties, so few candidates repeat.
  const wide = [{ layer: 0, numExperts: 16 }, { layer: 1, numExperts: 16 }];
  const fitness = async (_: RuntimePlan, candidate: PlanLayer[]) => candidate.reduce((s, l) => s + l.keptExperts.reduce((a, id) => a + Math.sin(id * 1.7 + l.layer), 0), 0) + (candidate[0].mergeMatrix ? candidate[0].mergeMatrix[0][candidate[0].keptExperts[0]] : 0);
  const options = { layers: wide, target: 8, fitness, populationSize: 8, eliteSize: 2, budget: 200, seed: 1, significance: 0 };
  const byBudget = await eepSearch(options);
  assert.equal(byBudget.evaluations, 200);
  const prune = byBudget.history.filter((h) => h.phase === 'prune');
  const merge = byBudget.history.filter((h) => h.phase === 'merge');
  assert.ok(prune.at(-1)!.evaluations >= 100 && prune.at(-1)!.evaluations < 100 + 6, `phase 1 ends at its half: ${prune.at(-1)!.evaluations}`);
  assert.ok(merge.length > 5, 'the merge phase runs generations until the budget is spent');
  const capped = await eepSearch({ ...options, generations: 3 });
  assert.equal(capped.history.filter((h) => h.phase === 'prune').length, 4, 'generation 0 and 3 more');
  assert.equal(capped.history.filter((h) => h.phase === 'merge').length, 4);
  assert.ok(capped.evaluations <= 2 * (8 + 3 * 6) && capped.evaluations < 200, `a capped search stops early: ${capped.evaluations}`);
});
