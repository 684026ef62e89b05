import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ArchitectureName } from '../../../server/src/checkpoint/modelSpec';
import { ModelEngine } from '../../../server/src/runtime/modelEngine';
import type { RuntimePlan } from '../../../server/src/runtime/runtimePlan';
import { Prng } from '../../support/prng';
import type { RandomCheckpointOptions } from '../../support/randomCheckpoint';
import { referenceForward, referenceLoss } from '../../support/referenceForward';
import { assertClose, randomSequences, withCheckpoint } from './runtimeFixtures';

const E = 8;
const prng = new Prng(21);
const identity = (n: number) => Array.from({ length: n }, (_, i) => Array.from({ length: E }, (_, j) => (i === j ? 1 : 0)));
const randomMatrix = (rows: number) => Array.from({ length: rows }, () => Array.from({ length: E }, () => prng.normal() / Math.sqrt(E)));
/** Five merged experts: 0+1, 2+3 averaged, 4..6 kept, 7 dropped (the usual shape of a merge plan). */
const pairMerge = [
  [0.5, 0.5, 0, 0, 0, 0, 0, 0],
  [0, 0, 0.5, 0.5, 0, 0, 0, 0],
  [0, 0, 0, 0, 1, 0, 0, 0],
  [0, 0, 0, 0, 0, 1, 0, 0],
  [0, 0, 0, 0, 0, 0, 1, 0],
];

const PLANS: Record<string, RuntimePlan> = {
  'expert mask': { layers: { 0: { keptExperts: [true, false, true, true, false, true, false, true] } } },
  'router mapping': { layers: { 1: { routerMap: randomMatrix(E) } } },
  'merged experts': { layers: { 0: { routerMap: pairMerge, mergeMatrix: pairMerge } } },
  'merged experts, random weights': { layers: { 0: { routerMap: randomMatrix(3), mergeMatrix: randomMatrix(3) } } },
  'output scales': { layers: { 0: { routerMap: pairMerge, mergeMatrix: pairMerge, outputScale: [1.5, 0.5, 2, 1, 0.25] }, 1: { routerMap: identity(6), mergeMatrix: identity(6), outputScale: [0, 1, 3, 1, 1, 0.5] } } },
  'top-1': { layers: { 0: { topK: 1 }, 1: { topK: 1 } } },
  'top-3': { layers: { 1: { topK: 3 } } },
  'adaptive gating': { layers: { 0: { adaptiveThreshold: 0.2 }, 1: { adaptiveThreshold: 0.05 } } },
  'everything at once': { layers: { 0: { routerMap: pairMerge, mergeMatrix: pairMerge, keptExperts: [true, true, false, true, true], topK: 3, adaptiveThreshold: 0.3 }, 1: { keptExperts: identity(E).map((_, i) => i !== 2) } } },
};

/** Plans that merge or rescale experts: an MXFP4 checkpoint evaluates them re-encoded (gptOssExport.test.ts checks that round trip). */
const REWEIGHTING = new Set(Object.entries(PLANS).filter(([, p]) => Object.values(p.layers).some((l) => l.mergeMatrix || l.outputScale)).map(([name]) => name));

async function checkPlans(architecture: ArchitectureName, extra: Partial<RandomCheckpointOptions> = {}, only: (name: string) => boolean = () => true): Promise<void> {
  await withCheckpoint({ architecture, seed: 13, numLayers: 2, numExperts: E, mlpOnlyLayers: [], ...extra }, async ({ spec, weights }) => {
    const engine = await ModelEngine.create(spec, weights);
    try {
      const sequences = randomSequences([8, 5], spec.vocabSize, 9);
      const unchanged = await engine.forward({ sequences, outputs: { logits: 'all' } });
      // Phi-MoE's sparsemixer routes at most two experts: the top-3 plans are refused (runtime.test below).
      const sparsemixer = spec.layers.some((l) => l.kind === 'moe' && l.moe.sparsemixer);
      for (const [name, plan] of Object.entries(PLANS).filter(([n, p]) => only(n) && (!sparsemixer || Object.values(p.layers).every((l) => (l.topK ?? 2) <= 2)))) {
        const result = await engine.forward({ sequences, outputs: { logits: 'all', moe: true }, plan });
        // A plan that silently did nothing would also match a reference that ignored it.
        assert.ok(result.sequences[0].logits!.some((v, i) => Math.abs(v - unchanged.sequences[0].logits![i]) > 1e-4), `${name}: plan changes the logits`);
        for (const [s, tokens] of sequences.entries()) {
          const reference = await referenceForward(spec, weights, tokens, plan);
          assertClose(result.sequences[s].logits!, reference.logits, `${name}: sequence ${s} logits`);
          for (const [m, layer] of reference.moe.entries()) {
            const capture = result.sequences[s].moe![m];
            assertClose(capture.routerLogits, layer.routerLogits, `${name}: layer ${m} router logits`);
            assert.deepEqual([...capture.selectedExperts], [...layer.selectedExperts], `${name}: layer ${m} selected experts`);
            assertClose(capture.gateWeights, layer.gateWeights, `${name}: layer ${m} gate weights`);
            assertClose(capture.expertOutputNorms, layer.expertOutputNorms, `${name}: layer ${m} expert output norms`);
          }
        }
      }
    } finally {
      await engine.close();
    }
  });
}

describe('runtime plans match the reference with the same plan applied', () => {
  for (const architecture of ['MixtralForCausalLM', 'Qwen2MoeForCausalLM', 'OlmoeForCausalLM', 'GraniteMoeForCausalLM', 'PhimoeForCausalLM'] as const) {
    it(architecture, () => checkPlans(architecture));
  }
  // GPT-OSS: every plan on bf16 experts; on MXFP4 experts the plans that keep expert weights as they are
  // (the reference decodes the blocks itself; a merged expert is re-encoded to MXFP4, which it does not model).
  it('GptOssForCausalLM (bf16 experts)', () => checkPlans('GptOssForCausalLM', { mxfp4: false }));
  it('GptOssForCausalLM (MXFP4 experts)', () => checkPlans('GptOssForCausalLM', {}, (name) => !REWEIGHTING.has(name)));
  // DeepSeek's routers: groups of 4 (the mask keeps them, 5 or 3 merged experts cannot), V3's correction bias mapped with the router rows.
  it('DeepseekV3ForCausalLM (FP8, 2 groups)', () => checkPlans('DeepseekV3ForCausalLM', { dtype: 'BF16', deepseek: { firstKDenseReplace: 0, nGroup: 2, topkGroup: 1, fp8: { blockSize: [16, 16], scaleDtype: 'F32' } } }));
  it('DeepseekV2ForCausalLM (group_limited_greedy)', () => checkPlans('DeepseekV2ForCausalLM', { deepseek: { firstKDenseReplace: 0, topkMethod: 'group_limited_greedy', nGroup: 2, topkGroup: 1 } }));
  it('Glm4MoeForCausalLM', () => checkPlans('Glm4MoeForCausalLM', { deepseek: { firstKDenseReplace: 0, useQkNorm: true } }));

  // Neuron orders (UNCURL's alignment) renumber merged experts' neurons: the merge pairs other neurons, the function of each expert is unchanged.
  const shuffled = (n: number) => prng.permutation(n);
  for (const architecture of ['MixtralForCausalLM', 'Qwen2MoeForCausalLM', 'OlmoeForCausalLM'] as const) {
    it(`${architecture}: merged experts with neuron orders match the reference, and differ from the unaligned merge`, async () => {
      await withCheckpoint({ architecture, seed: 13, numLayers: 2, numExperts: E, mlpOnlyLayers: [] }, async ({ spec, weights }) => {
        const engine = await ModelEngine.create(spec, weights);
        try {
          const I = spec.layers[0].kind === 'moe' ? spec.layers[0].moe.expert.intermediateSize : 0;
          const sequences = randomSequences([8, 5], spec.vocabSize, 9);
          // Expert 5 is copied (row 3): its order must change nothing.
          const neuronOrder = { 1: shuffled(I), 3: shuffled(I), 5: shuffled(I) };
          const unaligned: RuntimePlan = { layers: { 0: { routerMap: pairMerge, mergeMatrix: pairMerge }, 1: { routerMap: pairMerge, mergeMatrix: pairMerge } } };
          const aligned: RuntimePlan = { layers: { 0: { ...unaligned.layers[0], neuronOrder }, 1: { ...unaligned.layers[1], neuronOrder: { 0: shuffled(I) } } } };
          const [plain, result] = [await engine.forward({ sequences, outputs: { logits: 'all' }, plan: unaligned }), await engine.forward({ sequences, outputs: { logits: 'all' }, plan: aligned })];
          assert.ok(result.sequences[0].logits!.some((v, i) => Math.abs(v - plain.sequences[0].logits![i]) > 1e-4), 'the neuron orders change the merge');
          for (const [s, tokens] of sequences.entries()) {
            const reference = await referenceForward(spec, weights, tokens, aligned);
            assertClose(result.sequences[s].logits!, reference.logits, `sequence ${s} logits`);
          }
          // Orders on copied experts only change nothing at all.
          const copiesOnly: RuntimePlan = { layers: { 0: { routerMap: identity(6), mergeMatrix: identity(6), neuronOrder: { 2: shuffled(I) } } } };
          const copies = await engine.forward({ sequences, outputs: { logits: 'all' }, plan: copiesOnly });
          const plainCopies = await engine.forward({ sequences, outputs: { logits: 'all' }, plan: { layers: { 0: { routerMap: identity(6), mergeMatrix: identity(6) } } } });
          assert.deepEqual(copies.sequences[0].logits, plainCopies.sequences[0].logits);
        } finally {
          await engine.close();
        }
      });
    });
  }

  it('refuses neuron orders for fused experts (Granite MoE) and malformed ones', async () => {
    await withCheckpoint({ architecture: 'GraniteMoeForCausalLM', seed: 13, numLayers: 2, numExperts: E, mlpOnlyLayers: [] }, async ({ spec, weights }) => {
      const engine = await ModelEngine.create(spec, weights);
      try {
        const I = spec.layers[0].kind === 'moe' ? spec.layers[0].moe.expert.intermediateSize : 0;
        const sequences = randomSequences([4], spec.vocabSize);
        await assert.rejects(engine.forward({ sequences, outputs: { loss: true }, plan: { layers: { 0: { routerMap: pairMerge, mergeMatrix: pairMerge, neuronOrder: { 1: shuffled(I) } } } } }), /layer 0: neuronOrder cannot apply: .*fused/);
      } finally {
        await engine.close();
      }
    });
    await withCheckpoint({ architecture: 'MixtralForCausalLM' }, async ({ spec, weights }) => {
      const engine = await ModelEngine.create(spec, weights);
      try {
        const I = spec.layers[0].kind === 'moe' ? spec.layers[0].moe.expert.intermediateSize : 0;
        const sequences = randomSequences([4], spec.vocabSize);
        const twice = shuffled(I);
        twice[1] = twice[0];
        const bad: [RuntimePlan, RegExp][] = [
          [{ layers: { 0: { neuronOrder: { 1: shuffled(I) } } } }, /layer 0: neuronOrder needs a mergeMatrix/],
          [{ layers: { 0: { routerMap: pairMerge, mergeMatrix: pairMerge, neuronOrder: { 1: shuffled(I - 1) } } } }, new RegExp(`neuronOrder of expert 1 has ${I - 1} entries`)],
          [{ layers: { 0: { routerMap: pairMerge, mergeMatrix: pairMerge, neuronOrder: { 1: twice } } } }, /neuronOrder of expert 1 lists neuron \d+ twice/],
          [{ layers: { 0: { routerMap: pairMerge, mergeMatrix: pairMerge, neuronOrder: { 9: shuffled(I) } } } }, /neuronOrder names expert "9"/],
        ];
        for (const [plan, message] of bad) await assert.rejects(engine.forward({ sequences, outputs: { loss: true }, plan }), message);
      } finally {
        await engine.close();
      }
    });
  });

  it('adaptive gating drops second experts and renormalises to 1 (Mixtral)', async () => {
    await withCheckpoint({ architecture: 'MixtralForCausalLM', seed: 4 }, async ({ spec, weights }) => {
      const engine = await ModelEngine.create(spec, weights);
      try {
        const sequences = randomSequences([16], spec.vocabSize);
        const result = await engine.forward({ sequences, outputs: { moe: true }, plan: { layers: { 0: { adaptiveThreshold: 0 } } } });
        const capture = result.sequences[0].moe![0];
        for (let t = 0; t < 16; t++) {
          assert.equal(capture.selectedExperts[t * 2 + 1], -1);
          assert.ok(Math.abs(capture.gateWeights[t * 2] - 1) < 1e-6);
        }
      } finally {
        await engine.close();
      }
    });
  });

  it('plan evaluations reuse cached prefixes and stay exact', async () => {
    await withCheckpoint({ architecture: 'Qwen3MoeForCausalLM', seed: 8, numLayers: 3 }, async ({ spec, weights }) => {
      const engine = await ModelEngine.create(spec, weights);
      try {
        const sequences = randomSequences([10, 6], spec.vocabSize, 5);
        const plans: (RuntimePlan | undefined)[] = [
          undefined,
          { layers: { 2: { topK: 1 } } },
          { layers: { 1: { keptExperts: [false, true, true, true, true, true, true, true] } } },
          { layers: { 2: { topK: 1 } } },
          { layers: { 0: { topK: 3 } } },
          undefined,
        ];
        for (const plan of plans) {
          const result = await engine.forward({ sequences, outputs: { loss: true }, plan });
          for (const [s, tokens] of sequences.entries()) {
            const reference = await referenceForward(spec, weights, tokens, plan);
            assertClose(result.sequences[s].loss!, referenceLoss(reference.logits, spec.vocabSize, tokens), `plan ${JSON.stringify(plan)} sequence ${s} loss`);
          }
        }
      } finally {
        await engine.close();
      }
    });
  });

  it('rejects malformed plans with the layer in the message', async () => {
    await withCheckpoint({ architecture: 'MixtralForCausalLM' }, async ({ spec, weights }) => {
      const engine = await ModelEngine.create(spec, weights);
      try {
        const sequences = randomSequences([4], spec.vocabSize);
        const bad: [RuntimePlan, RegExp][] = [
          [{ layers: { 1: { topK: 9 } } }, /layer 1: topK 9/],
          [{ layers: { 0: { keptExperts: [true] } } }, /layer 0: keptExperts has 1 entries/],
          [{ layers: { 0: { mergeMatrix: pairMerge } } }, /needs a routerMap/],
          [{ layers: { 0: { keptExperts: new Array(8).fill(false) } } }, /removes every expert/],
        ];
        for (const [plan, message] of bad) await assert.rejects(engine.forward({ sequences, outputs: { loss: true }, plan }), message);
      } finally {
        await engine.close();
      }
    });
  });
});
