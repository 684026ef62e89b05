/**
 * GPT-OSS export in the source's encoding: MXFP4 blocks and scales, expert biases, router weight and bias
 * sliced byte for byte along the expert axis for kept experts; merged or rescaled MXFP4 experts re-encoded to
 * MXFP4, with the runtime evaluating the same re-encoded weights; a bf16 source merges exactly. Each export evaluates like the plan applied in the runtime.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadCheckpoint, type CheckpointLoad } from '../../../server/src/checkpoint';
import { exportHuggingFace, type ExportLayerPlan } from '../../../server/src/export';
import { analyseHfExactness } from '../../../server/src/plan/hfExactness';
import { ModelEngine } from '../../../server/src/runtime/modelEngine';
import type { RuntimePlan } from '../../../server/src/runtime/runtimePlan';
import { decodeMxfp4 } from '../../support/referenceFamilies';
import { assertClose, randomSequences } from '../runtime/runtimeFixtures';
import { assertBytesEqual, moeLayers, planFor, writeAndLoad } from './exportFixtures';

let root: string;
let counter = 0;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'moe-gptoss-export-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});
const fresh = (label: string) => join(root, `${label}-${counter++}`);

const KEPT = [5, 1, 6, 2];
const oneHot = (at: number) => Array.from({ length: 8 }, (_, j) => (j === at ? 1 : 0));
const MERGE = [[0.5, 0.5, 0, 0, 0, 0, 0, 0], oneHot(3), [0, 0, 0, 0, 0.25, 0.75, 0, 0], [0, 0, 0, 0, 0, 0, 0.4, 0.6]];

/** Expert j's slab of a tensor whose first axis is the expert axis, as stored. */
async function slab(model: CheckpointLoad, name: string, j: number): Promise<Uint8Array> {
  const raw = await model.weights.readRaw(name);
  const experts = (model.uncomputableTensors.find((t) => t.name === name)?.shape ?? model.weights.info(name).shape)[0];
  const size = raw.byteLength / experts;
  return raw.subarray(j * size, (j + 1) * size);
}

function runtimePlanOf(layers: number[], plan: ExportLayerPlan): RuntimePlan {
  const rows = plan.keptExperts.map(oneHot);
  return { layers: Object.fromEntries(layers.map((layer) => [layer, { routerMap: plan.routerMap ?? rows, mergeMatrix: plan.mergeMatrix ?? rows, outputScale: plan.outputScale, topK: plan.topK }])) };
}

async function logits(folder: string, plan?: RuntimePlan): Promise<Float32Array[]> {
  const { spec, weights } = await loadCheckpoint(folder);
  const engine = await ModelEngine.create(spec, weights);
  try {
    const result = await engine.forward({ sequences: randomSequences([11, 5], spec.vocabSize, 9), outputs: { logits: 'all' }, plan });
    return result.sequences.map((sequence) => sequence.logits!);
  } finally {
    await engine.close();
    await weights.close();
  }
}

describe('GPT-OSS export', () => {
  it('MXFP4 prune: blocks, scales, expert biases, router rows and bias of kept experts, byte for byte; evaluates like the runtime plan', async () => {
    const sourceFolder = fresh('mxfp4-source');
    const target = fresh('mxfp4-export');
    const source = await writeAndLoad(sourceFolder, { architecture: 'GptOssForCausalLM', dtype: 'BF16', seed: 3, swigluLimit: 0.05 });
    const layerPlan = { keptExperts: KEPT, topK: 1 };
    try {
      await exportHuggingFace(source, planFor(source.spec, () => layerPlan), target);
      const exported = await loadCheckpoint(target);
      try {
        assert.equal(exported.config.num_local_experts, 4);
        assert.equal(exported.config.num_experts_per_tok, 1);
        assert.equal(exported.config.experts_per_token, 1);
        assert.deepEqual(exported.config.quantization_config, source.config.quantization_config);
        const card = await readFile(join(target, 'README.md'), 'utf8');
        assert.match(card, /\(GptOssForCausalLM\)/);
        assert.match(card, /The experts stay in MXFP4/);
        for (const layer of moeLayers(source.spec)) {
          const names = source.spec.tensors.layer(layer);
          const experts = names.fusedExperts!;
          const perExpert = [`${experts.gateUp}_blocks`, `${experts.gateUp}_scales`, `${experts.down}_blocks`, `${experts.down}_scales`, experts.gateUpBias!, experts.downBias!, names.router!, names.routerBias!];
          for (const name of perExpert) {
            for (const [i, j] of KEPT.entries()) assertBytesEqual(await slab(exported, name, i), await slab(source, name, j), `${name} expert ${i}`);
          }
          assert.deepEqual(exported.uncomputableTensors.find((t) => t.name === `${experts.gateUp}_blocks`)?.shape, [4, 64, 2, 16]);
          assert.deepEqual(exported.weights.info(names.routerBias!).shape, [4]);
        }
      } finally {
        await exported.weights.close();
      }
    } finally {
      await source.weights.close();
    }
    const expected = await logits(sourceFolder, runtimePlanOf(moeLayers(source.spec), layerPlan));
    const actual = await logits(target);
    expected.forEach((sequence, s) => assertClose(actual[s], sequence, `sequence ${s} logits`));
  });

  const reencoded: [string, ExportLayerPlan][] = [
    ['merged experts', { keptExperts: [0, 3, 5, 7], mergeMatrix: MERGE }],
    ['output compensation', { keptExperts: KEPT, outputScale: [1, 2, 0.5, 1] }],
  ];
  for (const [label, layerPlan] of reencoded) {
    it(`MXFP4 ${label}: re-encoded to MXFP4 near Σ c·W, copies kept bit for bit, and the export evaluates like the runtime plan`, async () => {
      const sourceFolder = fresh('reencode-source');
      const target = fresh('reencode-export');
      const source = await writeAndLoad(sourceFolder, { architecture: 'GptOssForCausalLM', seed: 4, swigluLimit: 0.05 });
      // The plan is exact: export writes what the runtime evaluates (re-encoded weights).
      assert.equal(analyseHfExactness(moeLayers(source.spec).map((layer) => ({ layer, ...layerPlan })), source.spec).exact, true);
      try {
        await exportHuggingFace(source, planFor(source.spec, () => layerPlan), target);
        assert.match(await readFile(join(target, 'README.md'), 'utf8'), /a merged or rescaled one is re-encoded to MXFP4, and the quality below was measured on the re-encoded weights/);
        const exported = await loadCheckpoint(target);
        try {
          const rows = layerPlan.mergeMatrix ?? layerPlan.keptExperts.map(oneHot);
          for (const layer of moeLayers(source.spec)) {
            const experts = source.spec.tensors.layer(layer).fusedExperts!;
            for (const [weight, isDown] of [[experts.gateUp, false], [experts.down, true]] as const) {
              for (const [i, row] of rows.entries()) {
                const scaled = row.map((c) => c * (isDown ? (layerPlan.outputScale?.[i] ?? 1) : 1));
                const after = decodeMxfp4(await slab(exported, `${weight}_blocks`, i), await slab(exported, `${weight}_scales`, i));
                if (scaled.filter((c) => c !== 0).length === 1 && scaled.includes(1)) {
                  const j = scaled.indexOf(1);
                  assertBytesEqual(await slab(exported, `${weight}_blocks`, i), await slab(source, `${weight}_blocks`, j), `${weight} expert ${i} (a copy)`);
                  continue;
                }
                const expected = new Float64Array(after.length);
                for (const [j, c] of scaled.entries()) {
                  if (c === 0) continue;
                  const values = decodeMxfp4(await slab(source, `${weight}_blocks`, j), await slab(source, `${weight}_scales`, j));
                  for (let x = 0; x < values.length; x++) expected[x] += c * values[x];
                }
                // Within half an E2M1 step: the scale 2^e has max / 2^e in (3, 6], and the widest step (4 -> 6) is 2 · 2^e,
                // so no value moves more than 2^e < max / 3.
                for (let block = 0; block < after.length / 32; block++) {
                  const values = expected.subarray(block * 32, (block + 1) * 32);
                  const max = Math.max(...values.map(Math.abs));
                  for (let x = 0; x < 32; x++) assert.ok(Math.abs(after[block * 32 + x] - values[x]) <= max / 3 + 1e-12, `${weight} expert ${i} block ${block}`);
                }
              }
            }
          }
        } finally {
          await exported.weights.close();
        }
      } finally {
        await source.weights.close();
      }
      const expected = await logits(sourceFolder, runtimePlanOf(moeLayers(source.spec), layerPlan));
      const actual = await logits(target);
      expected.forEach((sequence, s) => assertClose(actual[s], sequence, `sequence ${s} logits`));
    });
  }

  it('bf16 experts: merges, mapped router with its bias and output compensation export and evaluate like the runtime plan', async () => {
    const sourceFolder = fresh('bf16-source');
    const target = fresh('bf16-export');
    const layerPlan: ExportLayerPlan = { keptExperts: [0, 3, 5, 7], mergeMatrix: MERGE, routerMap: [[0.5, 0.5, 0, 0, 0, 0, 0, 0], oneHot(3), oneHot(5), [0, 0, 0, 0, 0, 0, 0.5, 0.5]], outputScale: [1, 1.5, 0.5, 1] };
    const source = await writeAndLoad(sourceFolder, { architecture: 'GptOssForCausalLM', mxfp4: false, seed: 5, swigluLimit: 0.05 });
    assert.equal(analyseHfExactness(moeLayers(source.spec).map((layer) => ({ layer, ...layerPlan })), source.spec).exact, true);
    try {
      await exportHuggingFace(source, planFor(source.spec, () => layerPlan), target);
    } finally {
      await source.weights.close();
    }
    const expected = await logits(sourceFolder, runtimePlanOf(moeLayers(source.spec), layerPlan));
    const actual = await logits(target);
    expected.forEach((sequence, s) => assertClose(actual[s], sequence, `sequence ${s} logits`));
  });
});
