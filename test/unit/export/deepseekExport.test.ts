/**
 * DeepSeek export: FP8 experts and their block scales sliced byte for byte, the correction bias following the
 * kept router rows, the group limit kept (n_group / topk_group unchanged, n_routed_experts updated) when the
 * plan keeps equal groups, and refused with the reason when it cannot be honoured or an FP8 expert would be merged.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadCheckpoint, type CheckpointLoad } from '../../../server/src/checkpoint';
import { exportHuggingFace, type ExportLayerPlan } from '../../../server/src/export';
import { ExportError } from '../../../server/src/export/exportErrors';
import { analyseHfExactness } from '../../../server/src/plan/hfExactness';
import { toRuntimePlan } from '../../../server/src/plan/runtimeConversion';
import { ModelEngine } from '../../../server/src/runtime/modelEngine';
import type { RuntimePlan } from '../../../server/src/runtime/runtimePlan';
import type { RandomCheckpointOptions } from '../../support/randomCheckpoint';
import { referenceForward } from '../../support/referenceForward';
import { assertClose, randomSequences } from '../runtime/runtimeFixtures';
import { assertBytesEqual, moeLayers, planFor, writeAndLoad } from './exportFixtures';

let root: string;
let counter = 0;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'moe-deepseek-export-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});
const fresh = (label: string) => join(root, `${label}-${counter++}`);

/** 16 experts in 4 groups of 4; two kept from each group, listed group by group. */
const KEPT = [3, 0, 5, 6, 11, 8, 13, 15];
const V3_FP8: RandomCheckpointOptions = { architecture: 'DeepseekV3ForCausalLM', dtype: 'BF16', seed: 8, numLayers: 3, numExperts: 16, topK: 3, deepseek: { fp8: { blockSize: [16, 16], scaleDtype: 'F32' }, nGroup: 4, topkGroup: 2 } };
const V2_GROUPED: RandomCheckpointOptions = { architecture: 'DeepseekV2ForCausalLM', seed: 9, numLayers: 3, numExperts: 16, topK: 3, deepseek: { topkMethod: 'group_limited_greedy', nGroup: 4, topkGroup: 2, routedScalingFactor: 2 } };

async function logits(model: CheckpointLoad, plan?: RuntimePlan): Promise<Float32Array[]> {
  const engine = await ModelEngine.create(model.spec, model.weights);
  try {
    const result = await engine.forward({ sequences: randomSequences([11, 5, 8], model.spec.vocabSize, 9), outputs: { logits: 'all' }, plan });
    return result.sequences.map((sequence) => sequence.logits!);
  } finally {
    await engine.close();
  }
}

async function withSource<T>(options: RandomCheckpointOptions, use: (source: CheckpointLoad) => Promise<T>): Promise<T> {
  const source = await writeAndLoad(fresh('source'), options);
  try {
    return await use(source);
  } finally {
    await source.weights.close();
  }
}

describe('DeepSeek Hugging Face export', () => {
  for (const [label, options] of [['V3 FP8', V3_FP8], ['V2 group_limited_greedy', V2_GROUPED]] as const) {
    it(`${label}: a plan keeping equal groups exports exactly, evaluates as the runtime's mask did, and keeps n_group`, async () => {
      await withSource(options, async (source) => {
        const layerPlan: ExportLayerPlan = { keptExperts: KEPT };
        const planLayers = moeLayers(source.spec).map((layer) => ({ layer, keptExperts: KEPT }));
        const analysis = analyseHfExactness(planLayers, source.spec);
        assert.deepEqual([analysis.exact, analysis.reasons], [true, []]);
        // The sigmoid router (V3) breaks the softmax some methods read, and the plan says so; V2's softmax does not.
        if (source.spec.architecture === 'DeepseekV3ForCausalLM') assert.match(analysis.routingNote!, /scores experts by sigmoid .* full soft counts and router entropy, and router refit, read a softmax/);
        else assert.equal(analysis.routingNote, undefined);
        const runtimePlan = toRuntimePlan(planLayers, 16);
        const target = fresh('export');
        await exportHuggingFace(source, planFor(source.spec, () => layerPlan), target);
        const exported = await loadCheckpoint(target);
        try {
          assert.equal(exported.config.n_routed_experts, 8);
          assert.equal(exported.config.n_group, 4);
          assert.equal(exported.config.topk_group, 2);
          assert.deepEqual(exported.config.quantization_config, source.config.quantization_config);
          const card = await readFile(join(target, 'README.md'), 'utf8');
          assert.match(card, new RegExp(`\\(${source.spec.architecture}\\)`));
          assert.match(card, /Group-limited routing kept: 4 groups \(`n_group`\), the best 2 per token/);
          if (options.deepseek?.fp8) assert.match(card, /Experts stay FP8 \(e4m3, \[16,16\] block scales\)/);
          for (const layer of moeLayers(source.spec)) {
            const before = source.spec.tensors.layer(layer);
            const after = exported.spec.tensors.layer(layer);
            for (const [i, j] of KEPT.entries()) {
              for (const role of ['gate', 'up', 'down'] as const) {
                const [from, to] = [before.expert!(j)[role], after.expert!(i)[role]];
                assertBytesEqual(await exported.weights.readRaw(to), await source.weights.readRaw(from), `layer ${layer} expert ${i} ${role}`);
                if (options.deepseek?.fp8) {
                  assert.equal(exported.weights.info(to).dtype, 'F8_E4M3');
                  assertBytesEqual(await exported.weights.readRaw(to + '_scale_inv'), await source.weights.readRaw(from + '_scale_inv'), `layer ${layer} expert ${i} ${role} scales`);
                }
              }
            }
            if (before.correctionBias) {
              const bias = await source.weights.readFloat32(before.correctionBias);
              assert.deepEqual([...(await exported.weights.readFloat32(after.correctionBias!))], KEPT.map((j) => bias[j]));
            }
            // Removed experts' tensors are gone, scales included.
            assert.equal(exported.weights.has(`model.layers.${layer}.mlp.experts.8.gate_proj.weight`), false);
            assert.equal(exported.weights.has(`model.layers.${layer}.mlp.experts.8.gate_proj.weight_scale_inv`), false);
          }
          const expected = await logits(source, runtimePlan);
          const actual = await logits(exported);
          expected.forEach((sequence, s) => assertClose(actual[s], sequence, `sequence ${s} logits, export vs the runtime's plan`));
          // And the plan as the reference applies it, for one sequence.
          const tokens = randomSequences([11], source.spec.vocabSize, 9)[0];
          assertClose(actual[0], (await referenceForward(source.spec, source.weights, tokens, runtimePlan)).logits, 'export vs reference with the plan');
        } finally {
          await exported.weights.close();
        }
      });
    });
  }

  it('a plan that cannot keep equal groups is not exact, says why, and export refuses it', async () => {
    await withSource(V3_FP8, async (source) => {
      const uneven = [0, 1, 2, 3, 4, 5, 8, 12];
      const planLayers = moeLayers(source.spec).map((layer) => ({ layer, keptExperts: uneven }));
      const analysis = analyseHfExactness(planLayers, source.spec);
      assert.equal(analysis.exact, false);
      assert.match(analysis.reasons[0], /layer 1 keeps 4, 2, 1, 1 experts of its 4 groups; the exported equal groups of 2 would regroup them, so the group limit \(n_group 4, topk_group 2\) can no longer be honoured/);
      const four = analyseHfExactness([{ layer: 1, keptExperts: [0, 4, 8, 12] }], source.spec);
      assert.match(four.reasons[0], /layer 1 keeps 4 experts, which 4 groups cannot share equally with at least 2 each/);
      const shuffled = analyseHfExactness([{ layer: 1, keptExperts: [0, 4, 1, 5, 8, 9, 12, 13] }], source.spec);
      assert.match(shuffled.reasons[0], /not listed group by group/);
      await assert.rejects(exportHuggingFace(source, planFor(source.spec, () => ({ keptExperts: uneven })), fresh('refused')), (error: unknown) => {
        assert.ok(error instanceof ExportError);
        assert.equal(error.code, 'notExact');
        assert.match(error.message, /group limit \(n_group 4, topk_group 2\) can no longer be honoured/);
        return true;
      });
    });
  });

  it('merging FP8 experts is refused with the reason (no FP8 re-encoding)', async () => {
    await withSource(V3_FP8, async (source) => {
      const merge = KEPT.map((j, i) => Array.from({ length: 16 }, (_, e) => (e === j ? (i === 0 ? 0.5 : 1) : i === 0 && e === 1 ? 0.5 : 0)));
      await assert.rejects(exportHuggingFace(source, planFor(source.spec, () => ({ keptExperts: KEPT, mergeMatrix: merge, routerMap: merge })), fresh('merged')), (error: unknown) => {
        assert.ok(error instanceof ExportError, String(error));
        assert.match(error.message, /stores its experts in FP8 \(F8_E4M3 with weight_scale_inv block scales\)\. MoE Studio does not re-encode new weights in FP8/);
        return true;
      });
    });
  });
});
