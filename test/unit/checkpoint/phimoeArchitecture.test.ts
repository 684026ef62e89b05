import assert from 'node:assert/strict';
import { describe, it, test } from 'node:test';
import { parseModelConfig } from '../../../server/src/checkpoint/config';
import { describeRouting } from '../../../server/src/checkpoint/describe';
import { CheckpointError } from '../../../server/src/checkpoint/errors';
import { listExpectedTensors } from '../../../server/src/checkpoint/expectedTensors';
import { sparsemixerPicks } from '../../../server/src/plan/run/sparsemixerPicks';
import { ModelEngine } from '../../../server/src/runtime/modelEngine';
import { scaledRopeFrequencies } from '../../../server/src/runtime/ropeScaling';
import { referenceRope, sparsemixer } from '../../support/referenceFamilies';
import { referenceForward } from '../../support/referenceForward';
import { randomCheckpointConfig, type RandomCheckpointOptions } from '../../support/randomCheckpoint';
import { assertClose, randomSequences, withCheckpoint } from '../runtime/runtimeFixtures';

const PHIMOE = 'PhimoeForCausalLM' as const;

test('Phi-MoE config (as Phi-3.5-MoE writes it, "PhiMoEForCausalLM"): LayerNorm with biases, attention and lm_head biases, sparsemixer, LongRoPE', () => {
  const spec = parseModelConfig(randomCheckpointConfig({ architecture: PHIMOE, numExperts: 6 }));
  assert.equal(spec.architecture, PHIMOE);
  assert.equal(spec.layerNorm, true);
  assert.equal(spec.lmHeadBias, true);
  assert.equal(spec.attention.oBias, true);
  assert.equal(spec.attention.ropeScaling?.type, 'longrope');
  const layer = spec.layers[0];
  assert.ok(layer.kind === 'moe');
  assert.deepEqual(layer.moe.sparsemixer, { jitterEps: 0.01 });
  const names = spec.tensors.layer(1);
  assert.equal(names.router, 'model.layers.1.block_sparse_moe.gate.weight');
  assert.equal(names.expert!(3).gate, 'model.layers.1.block_sparse_moe.experts.3.w1.weight');
  const shapes = new Map(listExpectedTensors(spec).map((t) => [t.name, t.shape]));
  for (const [name, shape] of [
    ['model.layers.1.input_layernorm.bias', [64]],
    ['model.layers.1.post_attention_layernorm.bias', [64]],
    ['model.layers.1.self_attn.o_proj.bias', [64]],
    ['model.layers.1.self_attn.q_proj.bias', [64]],
    ['model.layers.1.self_attn.k_proj.bias', [32]],
    ['model.norm.bias', [64]],
    ['lm_head.bias', [320]],
  ] as const) {
    assert.deepEqual(shapes.get(name), shape, name);
  }
  assert.equal(describeRouting(spec), 'sparsemixer over 6 experts: top-2 one at a time, each weighted by a softmax over the logits within 0.02 (relative) of it');
});

test('Phi-MoE config: a top-k other than 2 and malformed LongRoPE factors are refused, named', () => {
  for (const [change, pattern] of [
    [{ num_experts_per_tok: 3 }, /"num_experts_per_tok" is 3; Phi-MoE's sparsemixer routes exactly 2/],
    [{ rope_scaling: { type: 'longrope', short_factor: [1, 1], long_factor: [1, 1], short_mscale: 1, long_mscale: 1, original_max_position_embeddings: 4096 } }, /"rope_scaling\.short_factor" should list 8 positive numbers/],
    [{ router_jitter_noise: -1 }, /"router_jitter_noise" should be a number ≥ 0/],
  ] as const) {
    const config = { ...randomCheckpointConfig({ architecture: PHIMOE }), ...change };
    assert.throws(() => parseModelConfig(config), (error: unknown) => error instanceof CheckpointError && error.code === 'invalidConfig' && pattern.test(error.message), JSON.stringify(change));
  }
});

test('sparsemixer (eval mode), hand-computed: the relative 2·eps window decides who shares the softmax', () => {
  // scores 2.0, 1.99, 1.0, -3: |2 - 1.99| / 2 = 0.005 <= 0.02, so expert 1 shares expert 0's softmax; 1.0 does not.
  const scores = [2.0, 1.99, 1.0, -3];
  const first = 1 / (1 + Math.exp(1.99 - 2));
  // Second: max 1.99 of the rest; |1.99 - 1.0| / 1.99 > 0.02, so the softmax is over expert 1 alone (expert 0 is -inf).
  assert.deepEqual(sparsemixer(scores, 0.01).map(({ expert }) => expert), [0, 1]);
  assert.ok(Math.abs(sparsemixer(scores, 0.01)[0].weight - first) < 1e-15);
  assert.ok(Math.abs(sparsemixer(scores, 0.01)[1].weight - 1) < 1e-15);
  const picks = sparsemixerPicks(scores, 4, () => true, 2, 0.01);
  assert.deepEqual(picks.experts, [0, 1]);
  assertClose(picks.gates, [first, 1], 'plan-side sparsemixer', 1e-12);
  // A removed expert is never picked nor in a softmax.
  assert.deepEqual(sparsemixerPicks(scores, 4, (e) => e !== 0, 2, 0.01).experts, [1, 2]);
});

test('LongRoPE picks the long factors past original_max_position_embeddings, with their mscale', () => {
  const scaling = parseModelConfig(randomCheckpointConfig({ architecture: PHIMOE, ropeOriginalMax: 6 })).attention.ropeScaling!;
  for (const length of [6, 7]) {
    const runtime = scaledRopeFrequencies(16, 10000, length, scaling);
    const reference = referenceRope(16, 10000, length, scaling);
    assertClose(runtime.invFreq, reference.invFreq, `length ${length}`, 1e-6);
    assert.equal(runtime.factor, reference.factor);
  }
  assert.notDeepEqual([...scaledRopeFrequencies(16, 10000, 6, scaling).invFreq], [...scaledRopeFrequencies(16, 10000, 7, scaling).invFreq]);
});

describe('Phi-MoE forward matches the float64 reference', () => {
  const cases: [string, Partial<RandomCheckpointOptions>][] = [
    ['short factors, published window', {}],
    ['long factors (sequences past original_max_position_embeddings) and a sliding window of 4', { ropeOriginalMax: 6, slidingWindow: 4 }],
  ];
  for (const [label, options] of cases) {
    it(label, async () => {
      await withCheckpoint({ architecture: PHIMOE, seed: 17, dtype: 'BF16', numExperts: 8, ...options }, async ({ spec, weights }) => {
        const engine = await ModelEngine.create(spec, weights);
        try {
          // One batch pads to 9: the long factors apply to both sequences, as HF picks them by the batch's length.
          const sequences = randomSequences(options.ropeOriginalMax ? [9, 9] : [9, 5], spec.vocabSize, 3);
          const result = await engine.forward({ sequences, outputs: { logits: 'all', moe: true } });
          for (const [s, tokens] of sequences.entries()) {
            const reference = await referenceForward(spec, weights, tokens);
            assertClose(result.sequences[s].logits!, reference.logits, `sequence ${s} logits`);
            for (const [m, layer] of reference.moe.entries()) {
              const capture = result.sequences[s].moe![m];
              assert.deepEqual([...capture.selectedExperts], [...layer.selectedExperts], `sequence ${s} layer ${m} experts`);
              assertClose(capture.gateWeights, layer.gateWeights, `sequence ${s} layer ${m} gates`);
            }
          }
        } finally {
          await engine.close();
        }
      });
    });
  }

  it('the second expert\'s weight is sparsemixer\'s, not a renormalised softmax (they differ on these weights)', async () => {
    await withCheckpoint({ architecture: PHIMOE, seed: 18, numExperts: 8 }, async ({ spec, weights }) => {
      const reference = await referenceForward(spec, weights, randomSequences([8], spec.vocabSize, 5)[0]);
      const layer = reference.moe[0];
      let differs = false;
      for (let t = 0; t < 8; t++) {
        const logits = Array.from(layer.routerLogits.subarray(t * 8, (t + 1) * 8));
        const [a, b] = [layer.selectedExperts[2 * t], layer.selectedExperts[2 * t + 1]];
        const renormalised = 1 / (1 + Math.exp(logits[b] - logits[a]));
        if (Math.abs(layer.gateWeights[2 * t] - renormalised) > 1e-3) differs = true;
      }
      assert.ok(differs);
    });
  });
});

test('a plan asking sparsemixer for three experts is refused with the reason', async () => {
  await withCheckpoint({ architecture: PHIMOE, seed: 19, numLayers: 1 }, async ({ spec, weights }) => {
    const engine = await ModelEngine.create(spec, weights);
    try {
      await assert.rejects(engine.forward({ sequences: randomSequences([4], spec.vocabSize), outputs: { logits: 'last' }, plan: { layers: { 0: { topK: 3 } } } }), /plan for layer 0: topK 3: Phi-MoE's sparsemixer routes at most 2 experts per token/);
    } finally {
      await engine.close();
    }
  });
});

test('the plan says when a top-k cannot be expressed for sparsemixer', async () => {
  const { analyseHfExactness } = await import('../../../server/src/plan/hfExactness');
  const spec = parseModelConfig(randomCheckpointConfig({ architecture: PHIMOE, numExperts: 8 }));
  const kept = [0, 2, 4, 6];
  assert.equal(analyseHfExactness([0, 1].map((layer) => ({ layer, keptExperts: kept })), spec).exact, true);
  const top1 = analyseHfExactness([0, 1].map((layer) => ({ layer, keptExperts: kept, topK: 1 })), spec);
  assert.equal(top1.exact, false);
  assert.match(top1.reasons.join(), /sparsemixer always routes 2 experts in transformers \(top-k 1 cannot be configured\)/);
});
