import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { type EepProgress, eepSearch } from '../../../server/src/plan/methods/eep';
import type { PlanLayer } from '../../../server/src/plan/planFile';
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
  const fitness = async (runtime: RuntimePlan, candidate: PlanLayer[]) => {
    const layer = candidate[0];
    if (!layer.mergeMatrix) return layer.keptExperts.includes(0) ? 0 : -10;
    assert.ok(runtime.layers[0].mergeMatrix && runtime.layers[0].routerMap);
    return -layer.mergeMatrix[0].reduce((s, x, j) => s + (x - wanted[j]) ** 2, 0) - 1;
  };
  const result = await eepSearch({ layers: [{ layer: 0, numExperts: 4 }], target: 1, fitness, populationSize: 10, eliteSize: 3, generations: 30, budget: 2000, seed: 3, sigma: 0.1, mutationRate: 0.5 });
  const merge = result.history.filter((h) => h.phase === 'merge');
  // The one-hot start scores -(0.2² + 0.2²) - 1 = -1.08; the first merge population holds it, so it is the floor.
  assert.ok(merge[0].bestFitness >= -1.08 - 1e-12);
  assert.equal(result.history.filter((h) => h.phase === 'prune').at(-1)!.bestFitness, 0);
  assert.ok(result.fitness > merge[0].bestFitness, `merging improved ${merge[0].bestFitness} → ${result.fitness}`);
  assert.deepEqual(result.layers[0].keptExperts, [0]);
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
