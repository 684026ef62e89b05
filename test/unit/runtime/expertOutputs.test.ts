/** Every expert's output on given rows (NAEE's reconstruction, computed in the runtime): against the float64 reference's SwiGLU. */
import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ModelEngine } from '../../../server/src/runtime/modelEngine';
import { Prng } from '../../support/prng';
import { clampedSwigluExpert, readGptOssExperts } from '../../support/referenceFamilies';
import { swigluRow } from '../../support/referenceMath';
import { assertClose, withCheckpoint } from './runtimeFixtures';

describe('expert outputs', () => {
  it('every expert of a MoE layer on every row equals a float64 SwiGLU of the checkpoint tensors, in chunks beyond 512 rows, within the budget', async () => {
    await withCheckpoint({ architecture: 'OlmoeForCausalLM', dtype: 'BF16', seed: 6, numLayers: 2, numExperts: 4, topK: 2, hiddenSize: 32, expertIntermediateSize: 24 }, async ({ spec, weights }) => {
      const engine = await ModelEngine.create(spec, weights);
      try {
        const H = spec.hiddenSize;
        const tokens = 600;
        const prng = new Prng(4);
        const inputs = Float32Array.from({ length: tokens * H }, () => prng.next() * 2 - 1);
        const layer = 1;
        const outputs = await engine.expertOutputs(layer, inputs, tokens);
        const moe = spec.layers[layer];
        assert.equal(moe.kind, 'moe');
        if (moe.kind !== 'moe') return;
        assert.equal(outputs.length, moe.moe.numExperts);
        const names = spec.tensors.layer(layer);
        for (const [e, output] of outputs.entries()) {
          const expert = names.expert!(e);
          const [gate, up, down] = [await weights.readFloat32(expert.gate), await weights.readFloat32(expert.up), await weights.readFloat32(expert.down)];
          const expected = new Float64Array(tokens * H);
          for (let t = 0; t < tokens; t++) expected.set(swigluRow(inputs, t, H, moe.moe.expert.intermediateSize, gate, up, down), t * H);
          assertClose(output, expected, `expert ${e}`);
        }
        assert.ok(engine.memoryAccount.peakBytes <= engine.memory.budgetBytes);
        await assert.rejects(engine.expertOutputs(layer, inputs, tokens + 1), /601 tokens need/);
      } finally {
        await engine.close();
      }
    });
  });

  it("GPT-OSS's experts (MXFP4, biases, the clamped SwiGLU) equal the float64 reference's", async () => {
    await withCheckpoint({ architecture: 'GptOssForCausalLM', seed: 8, numLayers: 1, numExperts: 4, swigluLimit: 0.05 }, async ({ spec, weights }) => {
      const engine = await ModelEngine.create(spec, weights);
      try {
        const H = spec.hiddenSize;
        const tokens = 5;
        const prng = new Prng(9);
        const inputs = Float32Array.from({ length: tokens * H }, () => prng.next() * 2 - 1);
        const layer = spec.layers[0];
        assert.ok(layer.kind === 'moe' && layer.moe.clampedSwiglu);
        if (layer.kind !== 'moe' || !layer.moe.clampedSwiglu) return;
        const { alpha, limit } = layer.moe.clampedSwiglu;
        const experts = await readGptOssExperts(spec, layer, async (name) => Float64Array.from(await weights.readFloat32(name)), (name) => weights.readRaw(name));
        const outputs = await engine.expertOutputs(0, inputs, tokens);
        for (const [e, output] of outputs.entries()) {
          const expected = new Float64Array(tokens * H);
          for (let t = 0; t < tokens; t++) expected.set(clampedSwigluExpert(inputs.subarray(t * H, (t + 1) * H), experts[e], layer.moe.expert.intermediateSize, H, alpha, limit), t * H);
          assertClose(output, expected, `expert ${e}`);
        }
      } finally {
        await engine.close();
      }
    });
  });
});
