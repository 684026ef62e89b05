/** NAEE's layer error against a float64 computation: expert SwiGLUs of the checkpoint tensors (the reference's swigluRow), routing among the kept experts, the mean squared distance. */
import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LayerReconstruction } from '../../../server/src/plan/run/layerReconstruction';
import { Prng } from '../../support/prng';
import { swigluRow } from '../../support/referenceMath';
import { withCheckpoint } from '../runtime/runtimeFixtures';

describe('NAEE layer error', () => {
  for (const architecture of ['MixtralForCausalLM', 'OlmoeForCausalLM'] as const) {
    it(`${architecture}: equals the mean of ||y_kept - y_all||^2 computed directly in float64`, async () => {
      await withCheckpoint({ architecture, seed: 9, numLayers: 1, numExperts: 6, topK: 2, hiddenSize: 16, expertIntermediateSize: 12 }, async ({ spec, weights }) => {
        const layer = spec.layers[0];
        assert.equal(layer.kind, 'moe');
        if (layer.kind !== 'moe') return;
        const { numExperts: E, topK: k, normTopKProb } = layer.moe;
        const H = spec.hiddenSize;
        const tokens = 20;
        const prng = new Prng(2);
        const inputs = Float32Array.from({ length: tokens * H }, () => prng.next() * 2 - 1);
        const routerLogits = Float32Array.from({ length: tokens * E }, () => prng.next() * 4 - 2);
        const reconstruction = await LayerReconstruction.build(spec, weights, new Map([[0, { inputs, routerLogits, tokens }]]));
        const names = spec.tensors.layer(0);
        const f: Float64Array[][] = [];
        for (let e = 0; e < E; e++) {
          const expert = names.expert!(e);
          const [gate, up, down] = [await weights.readFloat32(expert.gate), await weights.readFloat32(expert.up), await weights.readFloat32(expert.down)];
          f.push(Array.from({ length: tokens }, (_, t) => swigluRow(inputs, t, H, layer.moe.expert.intermediateSize, gate, up, down)));
        }
        const routed = (kept: number[], t: number) => {
          const p = kept.map((e) => Math.exp(routerLogits[t * E + e]));
          const total = p.reduce((a, b) => a + b, 0);
          const order = kept.map((e, i) => ({ e, p: p[i] })).sort((a, b) => b.p - a.p).slice(0, Math.min(k, kept.length));
          const chosenTotal = order.reduce((a, b) => a + b.p, 0);
          const y = new Float64Array(H);
          for (const { e, p: pe } of order) for (let h = 0; h < H; h++) y[h] += (pe / (normTopKProb ? chosenTotal : total)) * f[e][t][h];
          return y;
        };
        const all = Array.from({ length: E }, (_, e) => e);
        for (const kept of [[0, 1, 2, 3, 4], [0, 2, 5], [1, 4], [3]]) {
          let sum = 0;
          for (let t = 0; t < tokens; t++) {
            const a = routed(kept, t);
            const b = routed(all, t);
            for (let h = 0; h < H; h++) sum += (a[h] - b[h]) ** 2;
          }
          const expected = sum / tokens;
          const actual = await reconstruction.error(0, kept);
          assert.ok(Math.abs(actual - expected) <= 1e-4 * expected + 1e-12, `kept ${kept}: ${actual} against ${expected}`);
        }
        assert.equal(await reconstruction.error(0, all), 0);
      });
    });
  }
});
