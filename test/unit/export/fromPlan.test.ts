/** The plan file adapted to an ExportPlan: layers, exactness, provenance, and a clear error for a plan made for another model. */
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CheckpointError, loadCheckpoint, type CheckpointLoad } from '../../../server/src/checkpoint';
import { ExportError, exportPlanFile, loadPlanForExport, parseByteSize, previewPlanFile, progressMessage, toExportPlan } from '../../../server/src/export';
import { type ExportPlan, resolveExportPlan } from '../../../server/src/export/exportPlan';
import { formatPlan, type MoePlan } from '../../../server/src/plan';
import { moeLayers, writeAndLoad } from './exportFixtures';

let root: string;
let source: CheckpointLoad;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'moe-export-plan-'));
  source = await writeAndLoad(join(root, 'model'), { architecture: 'MixtralForCausalLM', seed: 2, numLayers: 3 });
});
after(async () => {
  await source.weights.close();
  await rm(root, { recursive: true, force: true });
});

function plan(overrides: Partial<MoePlan> = {}): MoePlan {
  return {
    schema: 'moe-studio.plan',
    version: 1,
    model: { folder: 'model', architecture: 'MixtralForCausalLM', numExperts: 8, numLayers: 3, topK: 2 },
    calibration: { datasets: ['data/code.train.jsonl'] },
    method: { name: 'reap', parameters: { targetExperts: 4 }, seed: 0 },
    uniformExpertCount: true,
    exactInHuggingFace: { exact: true, reasons: [] },
    layers: moeLayers(source.spec).map((layer) => ({ layer, keptExperts: [0, 2, 5, 7] })),
    evaluations: [{ dataset: 'data/code.valid.jsonl', metric: 'perplexity', value: 7.9, baseline: 7.1 }],
    ...overrides,
  };
}

async function writePlan(name: string, content: MoePlan): Promise<string> {
  const file = join(root, name);
  await writeFile(file, formatPlan(content));
  return file;
}

describe('plan → export plan', () => {
  it('carries layers, a top-k capped at the kept experts, adaptive gating and provenance', () => {
    const adapted = toExportPlan(
      plan({
        layers: [
          { layer: 0, keptExperts: [3], adaptiveThreshold: 0.2 },
          { layer: 1, keptExperts: [1, 4], mergeMatrix: [[0, 0.5, 0, 0, 0.5, 0, 0, 0], [0, 0, 0, 0, 1, 0, 0, 0]] },
        ],
      }),
      source.spec,
    );
    assert.deepEqual(adapted.layers[0], { keptExperts: [3], topK: 1, adaptiveThreshold: 0.2 });
    assert.deepEqual(adapted.layers[1].mergeMatrix?.[0], [0, 0.5, 0, 0, 0.5, 0, 0, 0]);
    assert.equal(adapted.layers[1].routerMap, undefined, 'the export defaults a missing routerMap exactly like the plan format');
    assert.equal(adapted.layers[2], undefined);
    assert.equal(adapted.huggingFace.exact, false);
    assert.ok(adapted.huggingFace.reasons!.some((reason) => /adaptive gating/.test(reason)));
    assert.ok(!adapted.huggingFace.reasons!.some((reason) => /different expert counts/.test(reason)), 'per-layer counts export (the config extension)');
    assert.equal(adapted.method, 'REAP pruning, 4 experts per layer');
    assert.equal(adapted.calibrationData, 'data/code.train.jsonl');
    assert.deepEqual(adapted.evaluation, {
      dataset: 'data/code.valid.jsonl',
      metrics: [{ dataset: 'data/code.valid.jsonl', metric: 'perplexity', value: 7.9, baseline: 7.1, name: 'perplexity', before: 7.1, after: 7.9 }],
    });
    assert.equal((adapted.planRecord as MoePlan).method.name, 'reap');
  });

  it('opens the model the plan names, relative to the plan file', async () => {
    const { source: opened, exportPlan } = await loadPlanForExport(await writePlan('ok.moeplan.json', plan()));
    await opened.weights.close();
    assert.equal(opened.folder, join(root, 'model'));
    assert.deepEqual(Object.keys(exportPlan.layers), ['0', '1', '2']);
    assert.equal(exportPlan.huggingFace.exact, true);
  });

  it('refuses a plan made for another model, saying how it differs', async () => {
    const file = await writePlan('other.moeplan.json', plan({ model: { folder: 'model', architecture: 'OlmoeForCausalLM', numExperts: 64, numLayers: 16 } }));
    await assert.rejects(loadPlanForExport(file), (error: unknown) => {
      assert.ok(error instanceof ExportError && error.code === 'invalidPlan');
      assert.match(error.message, /the plan is for OlmoeForCausalLM, the model is MixtralForCausalLM/);
      assert.match(error.message, /64 experts per layer, the model has 8/);
      assert.match(error.message, /16 layers, the model has 3/);
      return true;
    });
  });

  it('refuses a plan with errors, and a missing file, as invalid plans', async () => {
    const file = await writePlan('bad.moeplan.json', plan({ layers: [{ layer: 0, keptExperts: [0, 9] }] }));
    await assert.rejects(loadPlanForExport(file), (error: unknown) => error instanceof ExportError && error.code === 'invalidPlan' && /has errors/.test(error.message));
    await assert.rejects(loadPlanForExport(join(root, 'missing.moeplan.json')), (error: unknown) => error instanceof ExportError && error.code === 'invalidPlan');
  });

  it('previews and exports from the plan file, with the plan in the model card', async () => {
    const file = await writePlan('export.moeplan.json', plan());
    const preview = await previewPlanFile(file);
    assert.ok(preview.bytesSaved > 0);
    assert.match(preview.configAfter, /"num_local_experts": 4/);
    const result = await exportPlanFile(file, { format: 'huggingface', target: join(root, 'exported') });
    assert.match(result.modelCard!, /REAP pruning, 4 experts per layer/);
    assert.match(result.modelCard!, /\| perplexity \| 7\.1 \| 7\.9 \|/);
    assert.equal(result.modelCard, await readFile(join(root, 'exported', 'README.md'), 'utf8'));
  });

  it('carries neuron orders to the export, and refuses them for fused experts (Granite MoE) and bad orders', async () => {
    const I = source.spec.layers[0].kind === 'moe' ? source.spec.layers[0].moe.expert.intermediateSize : 0;
    const reversed = Array.from({ length: I }, (_, k) => I - 1 - k);
    const merge = { keptExperts: [0, 2], mergeMatrix: [[0.5, 0.5, 0, 0, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0, 0, 0]], neuronOrder: { 1: reversed } };
    const aligned = plan({ layers: moeLayers(source.spec).map((layer) => ({ layer, ...merge })), uniformExpertCount: true });
    const exportPlan = toExportPlan(aligned, source.spec);
    assert.deepEqual(exportPlan.layers[moeLayers(source.spec)[0]].neuronOrder, { 1: reversed });
    const resolved = resolveExportPlan(source.spec, exportPlan);
    assert.deepEqual(resolved.layers[0].neuronOrder, { 1: reversed });
    // The config's record of the plan leaves the orders out (they are in the weights), and only them.
    const record = exportPlan.planRecord as MoePlan;
    assert.deepEqual(record.layers.map((layer) => 'neuronOrder' in layer), aligned.layers.map(() => false));
    assert.deepEqual(record.layers.map((layer) => layer.mergeMatrix), aligned.layers.map((layer) => layer.mergeMatrix));
    const bad = toExportPlan(plan({ layers: [{ layer: moeLayers(source.spec)[0], ...merge, neuronOrder: { 1: reversed.slice(1) } }] }), source.spec);
    assert.throws(() => resolveExportPlan(source.spec, bad), (error: Error) => error instanceof ExportError && new RegExp(`neuronOrder of expert 1 has ${I - 1} entries`).test(error.message));
    const granite = await writeAndLoad(join(root, 'granite'), { architecture: 'GraniteMoeForCausalLM', seed: 2, numLayers: 2 });
    try {
      const layer = moeLayers(granite.spec)[0];
      const fused: ExportPlan = { layers: { [layer]: merge }, huggingFace: { exact: true } };
      assert.throws(() => resolveExportPlan(granite.spec, fused), (error: Error) => error instanceof ExportError && /fused/.test(error.message));
    } finally {
      await granite.weights.close();
    }
  });

  it('previews without reading the tokenizer: a garbage tokenizer.json still previews, the same as the intact model', async () => {
    const folder = join(root, 'garbage-tokenizer');
    await mkdir(folder);
    await cp(join(root, 'model'), join(folder, 'model'), { recursive: true });
    await writeFile(join(folder, 'model', 'tokenizer.json'), '{"model": [[[ not json');
    // The full loader does read it, so the preview below succeeds only because it skips the tokenizer.
    await assert.rejects(loadCheckpoint(join(folder, 'model')), (error: unknown) => error instanceof CheckpointError && /tokenizer\.json/.test(error.message));
    await writeFile(join(folder, 'x.moeplan.json'), formatPlan(plan()));
    const preview = await previewPlanFile(join(folder, 'x.moeplan.json'));
    assert.deepEqual(preview, await previewPlanFile(await writePlan('intact.moeplan.json', plan())));
    const opened = await loadCheckpoint(join(folder, 'model'), { tokenizer: false });
    await opened.weights.close();
    assert.equal('tokenizer' in opened, false);
  });

  it('describes progress as bytes of the total and a rate', () => {
    assert.equal(progressMessage({ phase: 'weights', bytesWritten: 1.2e9, bytesTotal: 3.9e9 }, 9230), '1.2 GB of 3.9 GB · 130 MB/s');
    assert.equal(progressMessage({ phase: 'weights', bytesWritten: 5e5, bytesTotal: 2e6 }, 1000), '500 kB of 2 MB · 500 kB/s');
  });

  it('reads shard sizes as transformers does', () => {
    assert.equal(parseByteSize('5GB'), 5e9);
    assert.equal(parseByteSize('500MB'), 5e8);
    assert.equal(parseByteSize('2GiB'), 2 * 2 ** 30);
    assert.equal(parseByteSize('1000'), 1000);
    assert.equal(parseByteSize('five'), undefined);
  });
});
