/** The ONNX export computes what the runtime computes with the plan applied, and fails without leaving anything behind. */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { readFileSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import { ModelProto } from '../../../server/src/runtime/onnxSchema';
import { loadCheckpoint, type CheckpointLoad } from '../../../server/src/checkpoint';
import { ExportError } from '../../../server/src/export';
import { toExportPlan } from '../../../server/src/export/fromPlan';
import { exportOnnx } from '../../../server/src/export/onnxExport';
import { toRuntimePlan, type MoePlan, type PlanLayer } from '../../../server/src/plan';
import { ModelEngine } from '../../../server/src/runtime/modelEngine';
import { Prng } from '../../support/prng';
import { assertClose, randomSequences } from '../runtime/runtimeFixtures';
import { failingFileSystem, moeLayers, snapshot, writeAndLoad } from './exportFixtures';

let root: string;
let counter = 0;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'moe-onnx-export-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});
const fresh = (label: string) => join(root, `${label}-${counter++}`);

/** A plan over the model's MoE layers: pruning with adaptive gating, merging, and the rest unchanged. */
export function testPlan(source: CheckpointLoad): MoePlan {
  const [first, second] = moeLayers(source.spec);
  const layers: PlanLayer[] = [
    { layer: first, keptExperts: [6, 1, 3, 4], adaptiveThreshold: 0.3 },
    {
      layer: second,
      keptExperts: [0, 3, 5],
      mergeMatrix: [
        [0.5, 0.5, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 1, 0, 0, 0, 0],
        [0, 0, 0, 0, 0.25, 0.75, 0, 0],
      ],
      routerMap: [
        [0.5, 0.5, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 1, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 1, 0, 0],
      ],
      topK: 2,
    },
  ];
  return {
    schema: 'moe-studio.plan',
    version: 1,
    model: { folder: source.folder, architecture: source.spec.architecture, numExperts: 8, numLayers: source.spec.layers.length, topK: 2 },
    calibration: { datasets: ['calibration.jsonl'] },
    method: { name: 'uncurl', parameters: { targetExperts: 4 }, seed: 0 },
    uniformExpertCount: false,
    exactInHuggingFace: { exact: false, reasons: [] },
    layers,
    evaluations: [],
  };
}

const LENGTHS = [11, 5, 8];

/** Runtime logits of every token, with the plan as the runtime runs it (masks for pruning, matrices for merging). */
async function runtimeLogits(source: CheckpointLoad, plan: MoePlan): Promise<Float32Array[]> {
  // The engine closes the weights it runs on, so it gets its own.
  const { spec, weights } = await loadCheckpoint(source.folder);
  const engine = await ModelEngine.create(spec, weights);
  try {
    const result = await engine.forward({ sequences: randomSequences(LENGTHS, spec.vocabSize, 9), outputs: { logits: 'all' }, plan: toRuntimePlan(plan.layers, 8) });
    return result.sequences.map((sequence) => sequence.logits!);
  } finally {
    await engine.close();
  }
}

/** ONNX logits per sequence; the batch is right-padded, except the last copy of sequence 0 which is left-padded. */
async function onnxLogits(file: string, vocab: number): Promise<{ logits: Float32Array[]; outputs: Record<string, ort.Tensor> }> {
  const sequences = randomSequences(LENGTHS, vocab, 9);
  const padded = Math.max(...LENGTHS) + 2;
  const rows = [...sequences.map((s) => ({ ids: s, left: 0 })), { ids: sequences[1], left: padded - sequences[1].length }];
  const ids = new BigInt64Array(rows.length * padded);
  const mask = new BigInt64Array(rows.length * padded);
  rows.forEach(({ ids: sequence, left }, b) => {
    sequence.forEach((id, t) => {
      ids[b * padded + left + t] = BigInt(id);
      mask[b * padded + left + t] = 1n;
    });
  });
  const session = await ort.InferenceSession.create(file);
  try {
    const outputs = await session.run({ input_ids: new ort.Tensor('int64', ids, [rows.length, padded]), attention_mask: new ort.Tensor('int64', mask, [rows.length, padded]) });
    const all = outputs.logits.data as Float32Array;
    assert.deepEqual(outputs.logits.dims, [rows.length, padded, vocab]);
    const logits = rows.map(({ ids: sequence, left }, b) => all.slice((b * padded + left) * vocab, (b * padded + left + sequence.length) * vocab));
    return { logits, outputs };
  } finally {
    await session.release();
  }
}

describe('ONNX export', () => {
  for (const architecture of ['MixtralForCausalLM', 'Qwen2MoeForCausalLM', 'Qwen3MoeForCausalLM', 'DeepseekV3ForCausalLM', 'GptOssForCausalLM', 'PhimoeForCausalLM'] as const) {
    it(`${architecture}: one ONNX graph gives the runtime's logits with prune, merge, adaptive gating and padding`, async () => {
      // DeepSeek V3 with YaRN (its frequencies and attention factor go into the graph), one group (nothing to break).
      const deepseek = architecture === 'DeepseekV3ForCausalLM' && { deepseek: { nGroup: 1, topkGroup: 1, yarn: { factor: 4, originalMaxPositionEmbeddings: 8, mscale: 1, mscaleAllDim: 0.8 } } };
      const source = await writeAndLoad(fresh(`${architecture}-source`), { architecture, seed: 5, numLayers: 3, tieWordEmbeddings: architecture === 'Qwen3MoeForCausalLM', ...deepseek });
      try {
        const plan = testPlan(source);
        const target = join(root, `${architecture}-${counter++}.onnx`);
        const result = await exportOnnx(source, toExportPlan(plan, source.spec), target, { routerLogits: true });
        assert.equal(result.externalData, false);
        assert.deepEqual(result.files.map((f) => f.path), [target.split('/').pop()]);
        const expected = await runtimeLogits(source, plan);
        const { logits, outputs } = await onnxLogits(target, source.spec.vocabSize);
        expected.forEach((sequence, s) => assertClose(logits[s], sequence, `sequence ${s} logits`));
        assertClose(logits[3], expected[1], 'left-padded sequence 1 logits');
        const [first, second] = moeLayers(source.spec);
        assert.equal(outputs[`router_logits_${first}`].dims[1], 4);
        assert.equal(outputs[`router_logits_${second}`].dims[1], 3);
        // Standard operators only, so any ONNX runtime loads it: no onnxruntime contrib op (the runtime's own
        // layers use com.microsoft.RotaryEmbedding and DynamicQuantizeMatMul).
        const model = ModelProto.decode(readFileSync(target)) as unknown as { graph: { node: { opType: string; domain?: string }[] } };
        assert.deepEqual(model.graph.node.filter((n) => n.domain && n.domain !== 'ai.onnx').map((n) => `${n.domain}.${n.opType}`), []);
      } finally {
        await source.weights.close();
      }
    });
  }

  it('OlmoeForCausalLM: merged experts with neuron orders (UNCURL\'s alignment) give the runtime\'s logits', async () => {
    const source = await writeAndLoad(fresh('olmoe-aligned-source'), { architecture: 'OlmoeForCausalLM', seed: 5, numLayers: 3 });
    try {
      const plan = testPlan(source);
      const prng = new Prng(4);
      const merged = plan.layers[1];
      const layerSpec = source.spec.layers[merged.layer];
      assert.ok(layerSpec.kind === 'moe');
      const I = layerSpec.moe.expert.intermediateSize;
      plan.layers[1] = { ...merged, neuronOrder: { 1: prng.permutation(I), 4: prng.permutation(I) } };
      const target = join(root, `olmoe-aligned-${counter++}.onnx`);
      await exportOnnx(source, toExportPlan(plan, source.spec), target);
      const expected = await runtimeLogits(source, plan);
      const unaligned = await runtimeLogits(source, { ...plan, layers: [plan.layers[0], merged] });
      assert.ok(expected[0].some((v, i) => Math.abs(v - unaligned[0][i]) > 1e-4), 'the neuron orders change the merge');
      const { logits } = await onnxLogits(target, source.spec.vocabSize);
      expected.forEach((sequence, s) => assertClose(logits[s], sequence, `sequence ${s} logits`));
    } finally {
      await source.weights.close();
    }
  });

  it('puts weights in page-aligned external data above the threshold, with the same logits', async () => {
    const source = await writeAndLoad(fresh('external-source'), { architecture: 'MixtralForCausalLM', seed: 8, numLayers: 2 });
    try {
      const plan = testPlan(source);
      const folder = fresh('external');
      await mkdir(folder);
      const target = join(folder, 'model.onnx');
      const progress: number[] = [];
      const result = await exportOnnx(source, toExportPlan(plan, source.spec), target, { externalDataThreshold: 0, onProgress: (p) => progress.push(p.bytesWritten) });
      assert.equal(result.externalData, true);
      assert.deepEqual((await readdir(folder)).sort(), ['model.onnx', 'model.onnx.data']);
      assert.ok(progress.at(-1)! >= result.weightBytes, 'progress reaches the total');
      const expected = await runtimeLogits(source, plan);
      const { logits } = await onnxLogits(target, source.spec.vocabSize);
      expected.forEach((sequence, s) => assertClose(logits[s], sequence, `sequence ${s} logits`));
    } finally {
      await source.weights.close();
    }
  });

  describe('bad input leaves the disk as it was', () => {
    let source: CheckpointLoad;
    before(async () => {
      source = await writeAndLoad(fresh('failures-source'), { architecture: 'MixtralForCausalLM', seed: 3, numLayers: 2 });
    });
    after(async () => {
      await source.weights.close();
    });

    it('refuses an existing target without overwrite, replaces it with', async () => {
      const folder = fresh('existing');
      await mkdir(folder);
      const target = join(folder, 'model.onnx');
      await writeFile(target, 'precious');
      const before = await snapshot(folder);
      await assert.rejects(exportOnnx(source, toExportPlan(testPlan(source), source.spec), target), (error: unknown) => error instanceof ExportError && error.code === 'targetExists');
      assert.deepEqual(await snapshot(folder), before);
      await exportOnnx(source, toExportPlan(testPlan(source), source.spec), target, { overwrite: true });
      assert.deepEqual(await readdir(folder), ['model.onnx']);
      await (await ort.InferenceSession.create(target)).release();
    });

    it('refuses a target that is not a .onnx file', async () => {
      await assert.rejects(exportOnnx(source, toExportPlan(testPlan(source), source.spec), fresh('folder-target')), (error: unknown) => error instanceof ExportError && error.code === 'invalidTarget');
    });

    it('cancelled mid-write leaves nothing', async () => {
      const folder = fresh('cancel');
      await mkdir(folder);
      const controller = new AbortController();
      await assert.rejects(
        exportOnnx(source, toExportPlan(testPlan(source), source.spec), join(folder, 'model.onnx'), {
          externalDataThreshold: 0,
          signal: controller.signal,
          onProgress: (p) => p.bytesWritten > 0 && controller.abort(),
        }),
        (error: unknown) => error instanceof ExportError && error.code === 'cancelled',
      );
      assert.deepEqual(await readdir(folder), []);
    });

    it('a full disk leaves nothing', async () => {
      const folder = fresh('full');
      await mkdir(folder);
      await assert.rejects(
        exportOnnx(source, toExportPlan(testPlan(source), source.spec), join(folder, 'model.onnx'), { externalDataThreshold: 0, fileSystem: failingFileSystem(3) }),
        (error: unknown) => error instanceof ExportError && error.code === 'noSpace',
      );
      assert.deepEqual(await readdir(folder), []);
    });
  });
});
