/**
 * The plan methods' own mix of captured expert outputs (layer error, output compensation, router refit:
 * plan/run/layerReconstruction.ts) against the float64 reference for GPT-OSS (expert biases, clamped SwiGLU,
 * router bias) and Phi-MoE (sparsemixer): the layer error of a kept subset is the mean squared distance between
 * the reference's routed output with that subset and without it.
 */
import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ArchitectureName } from '../../../server/src/checkpoint/modelSpec';
import { LayerReconstruction } from '../../../server/src/plan/run/layerReconstruction';
import { referenceForward } from '../../support/referenceForward';
import { randomSequences, withCheckpoint } from '../runtime/runtimeFixtures';

const KEPT = [0, 2, 3, 5, 6];

describe('layer reconstruction of the new families matches the reference', () => {
  for (const architecture of ['GptOssForCausalLM', 'PhimoeForCausalLM'] as ArchitectureName[]) {
    it(architecture, async () => {
      await withCheckpoint({ architecture, seed: 23, numExperts: 8, swigluLimit: 0.05 }, async ({ spec, weights }) => {
        const tokens = randomSequences([12], spec.vocabSize, 2)[0];
        const full = await referenceForward(spec, weights, tokens);
        const captured = new Map(full.moe.map((m) => [m.layer, { inputs: Float32Array.from(m.inputs), routerLogits: Float32Array.from(m.routerLogits), tokens: tokens.length }]));
        const reconstruction = await LayerReconstruction.build(spec, weights, captured);
        for (const layer of full.moe.map((m) => m.layer)) {
          const mask = Array.from({ length: 8 }, (_, e) => KEPT.includes(e));
          const pruned = await referenceForward(spec, weights, tokens, { layers: { [layer]: { keptExperts: mask } } });
          const a = full.moe.find((m) => m.layer === layer)!.routedOutput;
          const b = pruned.moe.find((m) => m.layer === layer)!.routedOutput;
          let expected = 0;
          for (let i = 0; i < a.length; i++) expected += (a[i] - b[i]) ** 2;
          expected /= tokens.length;
          const actual = await reconstruction.error(layer, KEPT);
          assert.ok(expected > 1e-8, `layer ${layer}: removing experts changes the output`);
          assert.ok(Math.abs(actual - expected) <= 1e-4 * expected + 1e-10, `layer ${layer}: error ${actual}, reference ${expected}`);
        }
      });
    });
  }
});
