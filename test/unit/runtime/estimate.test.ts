/** The estimate's arithmetic (extrapolate), with hand-computed figures, and EEP's work shape against a real search's calls. */
import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseModelConfig } from '../../../server/src/checkpoint/config';
import { extrapolate, type ExtrapolationInput } from '../../../server/src/runtime/estimate';
import { layerWeightBytes, planMemory } from '../../../server/src/runtime/memoryBudget';
import type { LayerTiming } from '../../../server/src/runtime/modelEngine';
import { eepSearch } from '../../../server/src/plan/methods/eep';
import { eepAlignmentPairs, eepWork, eepWorkShape, measureEepAlignment } from '../../../server/src/plan/run/eepEstimate';
import { randomCheckpointConfig } from '../../support/randomCheckpoint';

const { tensors: _names, ...shape } = parseModelConfig(randomCheckpointConfig({ architecture: 'MixtralForCausalLM', numLayers: 4, numExperts: 8, hiddenSize: 64 }));
const timing: LayerTiming = { layer: 0, tokens: 1000, loadSeconds: 2, reloadSeconds: 1, layerSeconds: 0.5, headSeconds: 0.25, headLoadSeconds: 0.5, mergeSeconds: 3 };
const work = { tokens: 4000, variants: 2, repeats: 3, passesPerRepeat: 2, merges: { builds: 5, matrix: [[1, 0, 0, 0, 0, 0, 0, 0]] } };
const streamed = planMemory(shape, { budgetBytes: planMemory(shape, { budgetBytes: 1e15 }).streamingFloorBytes });
const input = (over: Partial<ExtrapolationInput>): ExtrapolationInput => ({ model: shape, memory: streamed, timing, work, withHead: true, pageCacheBytes: 1e15, ...over });

describe('estimate arithmetic', () => {
  it('streamed: compute per token x tokens x repeats x variants, loading per pass (first load cold, later ones from the page cache), merged builds', () => {
    assert.equal(streamed.policy, 'streamed');
    // compute: 4000 tokens x 3 repeats x 2 variants x (4 layers x 0.5 s + 0.25 s) / 1000 tokens = 54 s
    // loading: 6 passes over 4 equal layers: 4 x (2 s + 5 x 1 s) = 28 s, and the streamed head 6 x 0.5 s = 3 s;
    // merging: 5 builds x 3 s = 15 s
    assert.equal(streamed.headResident, false);
    const estimate = extrapolate(input({}));
    assert.ok(Math.abs(estimate.seconds - 100) < 1e-9, `${estimate.seconds}`);
    assert.ok(Math.abs(estimate.loadingSeconds - 31) < 1e-9);
    assert.equal(estimate.mergingSeconds, 15);
    assert.match(estimate.summary, /^estimated 1 min 40 s \(31 s of it loading weights, 6 passes; 15 s building 5 merged layers\), peak memory about/);
  });

  it('a checkpoint larger than the page cache is read from disk on every pass', () => {
    const checkpointBytes = shape.layers.reduce((sum, layer) => sum + layerWeightBytes(shape, layer, 'fp32') / 2, 0);
    // loading: 4 x 6 x 2 s = 48 s, plus the head's 3 s
    assert.ok(Math.abs(extrapolate(input({ pageCacheBytes: checkpointBytes - 1 })).loadingSeconds - 51) < 1e-9);
    assert.ok(Math.abs(extrapolate(input({ pageCacheBytes: checkpointBytes })).loadingSeconds - 31) < 1e-9);
  });

  it('without the head, without merges, and resident: the measured forward per token, no loading', () => {
    // (4 x 0.5) / 1000 x 24000 = 48 s
    assert.ok(Math.abs(extrapolate(input({ withHead: false, work: { ...work, merges: undefined } })).seconds - (48 + 28)) < 1e-9);
    const resident = planMemory(shape, { budgetBytes: 1e15 });
    const estimate = extrapolate(input({ memory: resident, forwardSecondsPerToken: 0.003 }));
    // 24000 x 0.003 = 72 s, plus 15 s of merged builds
    assert.equal(estimate.loadingSeconds, 0);
    assert.ok(Math.abs(estimate.seconds - 87) < 1e-9);
  });

  it('pinned layers: loaded by the first pass at the streamed layer\'s rate, reloaded prepacked by the second when the first loads were not', () => {
    const B = streamed.layerBytes[0];
    // first pass: 2 layers' bytes at 2 s a layer = 4 s; 6 passes, so the reload: 3 layers' bytes at 5 s a layer = 15 s; beside the 31 s above
    const pinned = { loadBytes: 2 * B, prepacked: false, reloadBytes: 3 * B, prepackedPerByte: 5 / B };
    assert.ok(Math.abs(extrapolate(input({ timing: { ...timing, pinned } })).loadingSeconds - 50) < 1e-9);
    // one pass: no reload (the streamed layers' 4 x 2 s and no head for a profile)
    const onePass = { ...work, repeats: 1, passesPerRepeat: 1 };
    assert.ok(Math.abs(extrapolate(input({ work: onePass, withHead: false, timing: { ...timing, pinned } })).loadingSeconds - 12) < 1e-9);
    // loaded prepacked the first time: nothing to reload
    assert.ok(Math.abs(extrapolate(input({ timing: { ...timing, pinned: { loadBytes: 2 * B, prepacked: true, reloadBytes: 0 } } })).loadingSeconds - 35) < 1e-9);
  });

  it('the caller\'s own work sets the pace when it is slower than the runtime', () => {
    // 4000 tokens x 3 repeats x 0.01 s = 120 s > 100 s
    assert.ok(Math.abs(extrapolate(input({ work: { ...work, hostSecondsPerToken: 0.01 } })).seconds - 120) < 1e-9);
  });

  it('work the caller does in turn (EEP\'s alignment) adds its seconds and says what it is', () => {
    const estimate = extrapolate(input({ work: { ...work, alongside: { seconds: 20, what: 'aligning the neurons of 16 merged experts' } } }));
    assert.ok(Math.abs(estimate.seconds - 120) < 1e-9, `${estimate.seconds}`);
    assert.match(estimate.summary, /^estimated 2 min 0 s \(31 s of it loading weights, 6 passes; 15 s building 5 merged layers; 20 s aligning the neurons of 16 merged experts\)/);
  });
});

describe("EEP's work shape", () => {
  it('counts passes, candidates and merged layers as eepSearch scores them (hand-computed, and within 30% of a search with a counting fitness)', async () => {
    // budget 8 < a population of 16: the prune phase's first generation takes it all, the merge phase gets nothing.
    assert.deepEqual(eepWork({ budget: 8 }, 16), { passes: 1, evaluations: 8, mergedLayerBuilds: 0 });
    // budget 100: prune 16 + 12 + 12 + 12 (passes its half at 52), merge 16 + 12 + 12 + 8 = 48 candidates x 3 layers.
    assert.deepEqual(eepWork({ budget: 100 }, 3), { passes: 8, evaluations: 100, mergedLayerBuilds: 144 });
    const shape = eepWorkShape(eepWork({ budget: 100 }, 3), 4, 8);
    assert.equal(shape.variants, 12.5);
    assert.equal(shape.repeats, 8);
    assert.equal(shape.merges!.builds, 144);
    assert.equal(shape.merges!.matrix.length, 4);

    for (const budget of [8, 40, 100]) {
      const calls: { candidates: number; merged: number }[] = [];
      let value = 0;
      const layers = [0, 1, 2].map((layer) => ({ layer, numExperts: 8 }));
      await eepSearch({
        layers,
        target: 4,
        budget,
        seed: 3,
        fitness: async () => (value += 0.001),
        fitnessMany: async (plans) => {
          calls.push({ candidates: plans.length, merged: plans.reduce((sum, p) => sum + Object.values(p.layers).filter((l) => l?.mergeMatrix).length, 0) });
          return plans.map(() => (value += 0.001));
        },
      });
      const predicted = eepWork({ budget }, 3);
      const evaluations = calls.reduce((sum, c) => sum + c.candidates, 0);
      assert.ok(calls.length <= predicted.passes && evaluations <= predicted.evaluations, `budget ${budget}: ${calls.length} passes, ${evaluations} candidates; predicted ${JSON.stringify(predicted)}`);
      // A candidate the prune phase meets twice is free, which leaves the merge phase a little more.
      const merged = calls.reduce((sum, c) => sum + c.merged, 0);
      assert.ok(Math.abs(merged - predicted.mergedLayerBuilds) <= 0.3 * predicted.mergedLayerBuilds, `budget ${budget}: ${merged} merged layers, predicted ${predicted.mergedLayerBuilds}`);
      assert.ok(evaluations >= Math.min(budget, 16) && calls.length >= 1);
    }
  });
});

describe("EEP's neuron alignment in its estimate", () => {
  it('counts one assignment per expert a layer does not keep, leaving out refused and too-wide layers', () => {
    const layers = [
      { layer: 0, numExperts: 8, intermediate: 320 },
      { layer: 1, numExperts: 8, intermediate: 320 },
      { layer: 2, numExperts: 8, intermediate: 5000 }, // above MAX_ALIGNED_NEURONS (4096)
      { layer: 3, numExperts: 16, intermediate: 320 },
    ];
    // Keeping 4: 4 + (refused) + (too wide) + 12.
    assert.equal(eepAlignmentPairs(layers, 4, (layer) => (layer === 1 ? 'fused experts' : undefined)), 16);
    assert.equal(eepAlignmentPairs(layers, 8, () => undefined), 8);
  });

  it("prices them from one measured assignment on the source's own experts", async () => {
    const I = 6;
    const H = 4;
    const expert = (seed: number) => {
      const values = (n: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(seed * 7 + i));
      return { gate: values(I * H), up: values(I * H), down: values(H * I) };
    };
    const read: number[] = [];
    const source = {
      hidden: H,
      intermediate: () => I,
      refusal: () => undefined,
      expert: async (_layer: number, id: number) => (read.push(id), expert(id)),
    };
    const measured = await measureEepAlignment(source, [{ layer: 0, numExperts: 4, intermediate: I }, { layer: 1, numExperts: 4, intermediate: I }], 2);
    assert.equal(measured!.pairs, 4);
    assert.ok(measured!.seconds > 0);
    assert.deepEqual(read, [0, 1], 'one anchor and one member read');
    assert.equal(await measureEepAlignment(source, [{ layer: 0, numExperts: 4, intermediate: I }], 4), undefined, 'nothing merged: nothing to align');
  });
});
