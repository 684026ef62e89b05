/**
 * A population of merged variants (an EEP generation) under a budget that holds one layer streaming,
 * not every variant's merged layer at once: the results equal resident ones, and the engine's own
 * account of what it held stays within the budget.
 */
import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ModelSpec } from '../../../server/src/checkpoint/modelSpec';
import type { ForwardResult } from '../../../server/src/runtime/forwardTypes';
import { mergedLayerBytes, planMemory } from '../../../server/src/runtime/memoryBudget';
import { ModelEngine } from '../../../server/src/runtime/modelEngine';
import type { RuntimePlan } from '../../../server/src/runtime/runtimePlan';
import { Prng } from '../../support/prng';
import { randomSequences, withCheckpoint } from './runtimeFixtures';

const SPILL_BYTES = 16 * 1024;

/** `rows` merged experts, each a random mix of a few of the layer's E (EEP's perturbed merges look like this). */
function randomMerge(rows: number, experts: number, prng: Prng): number[][] {
  return Array.from({ length: rows }, (_, r) => Array.from({ length: experts }, (_, e) => (e === r ? 1 : prng.next() < 0.3 ? 0.1 + 0.4 * prng.next() : 0)));
}

function populationOf(spec: ModelSpec, size: number, rows: number): RuntimePlan[] {
  const prng = new Prng(17);
  return Array.from({ length: size }, () => ({
    layers: Object.fromEntries(
      spec.layers.flatMap((layer) => {
        if (layer.kind !== 'moe') return [];
        const merge = randomMerge(rows, layer.moe.numExperts, prng);
        return [[layer.index, { routerMap: merge, mergeMatrix: merge }]];
      }),
    ),
  }));
}

function assertSameLoss(actual: ForwardResult[], expected: ForwardResult[]): void {
  assert.equal(actual.length, expected.length);
  for (const [v, result] of expected.entries()) {
    for (const [s, sequence] of result.sequences.entries()) assert.deepEqual([...actual[v].sequences[s].loss!], [...sequence.loss!], `variant ${v}, sequence ${s}`);
  }
}

describe('merged variants under a memory budget', () => {
  it('a population of merged plans runs one merged layer at a time: identical to resident, the engine holds at most its budget', async () => {
    await withCheckpoint({ architecture: 'MixtralForCausalLM', seed: 12, numLayers: 3, numExperts: 8, topK: 2, hiddenSize: 128, expertIntermediateSize: 512 }, async ({ spec, weights }) => {
      const { tensors: _names, ...shape } = spec;
      const probe = planMemory(shape, { budgetBytes: 1e15, hiddenStateBytes: SPILL_BYTES });
      const rows = 5;
      const population = populationOf(spec, 4, rows);
      const plans: (RuntimePlan | undefined)[] = [undefined, ...population];
      // The slot holds one layer while it loads (or one layer and a batch's work); the population's merged
      // layers with the layer itself do not fit in it, so building them all at once would overrun.
      const largest = Math.max(...probe.layerBytes);
      const merged = mergedLayerBytes(shape, spec.layers[0], rows, 'fp32');
      const slot = Math.max(2 * largest, largest + probe.workBytes);
      assert.ok(largest + population.length * merged + probe.workBytes > slot, 'the test needs a population that does not fit the slot');
      const sequences = randomSequences([9, 14, 5, 11], spec.vocabSize, 3);
      const request = { sequences, outputs: { loss: true }, plans, maxBatchTokens: 24 };
      const resident = await ModelEngine.create(spec, weights);
      try {
        const expected = await resident.forwardVariants(request);
        for (const budget of [probe.streamingFloorBytes, probe.streamingFloorBytes + probe.headBytes + probe.layerBytes[spec.layers.length - 1]]) {
          const engine = await ModelEngine.create(spec, weights, { memoryBudget: budget, hiddenStateBytes: SPILL_BYTES });
          try {
            assert.notEqual(engine.memory.policy, 'resident');
            assertSameLoss(await engine.forwardVariants(request), expected);
            const { peakBytes, budgetBytes } = engine.memoryAccount;
            assert.equal(budgetBytes, budget);
            assert.ok(peakBytes <= budget, `${engine.memory.policy}: the engine held ${peakBytes} bytes at its peak, over its budget of ${budget}`);
            // It did hold a layer and a merged one's load at some point (the account is not empty).
            assert.ok(peakBytes >= engine.memory.fixedBytes + 2 * merged, `${engine.memory.policy}: peak ${peakBytes}`);
            // Each layer's own session loaded once for the pass (all the population's merges are built beside it), and the head once when it streams.
            assert.equal(engine.loading.loads, spec.layers.length - engine.memory.residentLayers.length + (engine.memory.headResident ? 0 : 1));
          } finally {
            await engine.close();
          }
        }
      } finally {
        await resident.close();
      }
    });
  });

  it('resident: a population of merges runs as one work set, the same results as plan by plan', async () => {
    await withCheckpoint({ architecture: 'OlmoeForCausalLM', seed: 5, numLayers: 2, numExperts: 8, topK: 2 }, async ({ spec, weights }) => {
      const plans = populationOf(spec, 3, 6);
      const sequences = randomSequences([7, 12, 9], spec.vocabSize, 9);
      const engine = await ModelEngine.create(spec, weights);
      try {
        assert.equal(engine.memory.policy, 'resident');
        const together = await engine.forwardVariants({ sequences, outputs: { loss: true }, plans, maxBatchTokens: 16 });
        const separately = [];
        for (const plan of plans) separately.push(await engine.forward({ sequences, outputs: { loss: true }, plan, maxBatchTokens: 16 }));
        assertSameLoss(together, separately);
        assert.ok(engine.memoryAccount.peakBytes <= engine.memory.budgetBytes);
      } finally {
        await engine.close();
      }
    });
  });
});
