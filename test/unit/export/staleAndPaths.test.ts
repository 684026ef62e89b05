/**
 * Export after kill -9 and export paths (issue #15): stale partial folders of dead processes are
 * removed by the next export to the same parent (live ones are kept), a target inside the source
 * model folder is refused, and a plan's relative model folder never resolves upward.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { CheckpointLoad } from '../../../server/src/checkpoint';
import { ExportError, exportHuggingFace, exportOnnx, loadPlanForExport, type ExportPlan } from '../../../server/src/export';
import { nodeFileSystem, removeStalePartials } from '../../../server/src/export/exportFileSystem';
import { planFor, writeAndLoad } from './exportFixtures';

let root: string;
let source: CheckpointLoad;
let plan: ExportPlan;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'moe-export-stale-'));
  source = await writeAndLoad(join(root, 'source'), { architecture: 'MixtralForCausalLM', numLayers: 1, numExperts: 4, topK: 2, hiddenSize: 8, numHeads: 2, numKvHeads: 1, expertIntermediateSize: 8 });
  plan = planFor(source.spec, () => ({ keptExperts: [0, 1] }));
});
after(async () => {
  await source.weights.close();
  await rm(root, { recursive: true, force: true });
});

/** The pid of a process that has exited (so no live process has it, barring reuse in these milliseconds). */
function deadPid(): number {
  return spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout as unknown as number;
}

test('the next export removes partial folders of dead processes and says so; live ones stay', async () => {
  const parent = join(root, 'exports');
  await mkdir(parent);
  const stale = `.old.partial-${deadPid()}-0123456789ab`;
  const live = `.other.partial-${process.ppid}-0123456789ab`;
  const unrelated = '.notes.partial-mine';
  for (const name of [stale, live, unrelated]) {
    await mkdir(join(parent, name));
    await writeFile(join(parent, name, 'model-00001-of-00002.safetensors'), 'x'.repeat(1000));
  }
  const result = await exportHuggingFace(source, plan, join(parent, 'pruned'));
  assert.deepEqual(result.staleRemoved, [stale]);
  assert.deepEqual((await readdir(parent)).sort(), [live, unrelated, 'pruned'].sort());
  assert.deepEqual(await removeStalePartials(nodeFileSystem, parent), []);
});

test('an export target inside the source model folder is refused, for both formats', async () => {
  await assert.rejects(exportHuggingFace(source, plan, join(source.folder, 'pruned')), (error: unknown) => error instanceof ExportError && error.code === 'invalidTarget' && /inside the source model folder/.test(error.message));
  await assert.rejects(exportOnnx(source, plan, join(source.folder, 'sub', 'model.onnx')), (error: unknown) => error instanceof ExportError && error.code === 'invalidTarget' && /inside the source model folder/.test(error.message));
  assert.deepEqual((await readdir(source.folder)).filter((name) => name.includes('pruned') || name.includes('onnx')), []);
});

test("a plan's relative model folder resolves against the plan's folder and the workspace, never upward", async () => {
  // root/source is the model; a plan two folders below root naming "source" must not find it by climbing.
  const nested = join(root, 'a', 'b');
  await mkdir(nested, { recursive: true });
  const planFile = join(nested, 'x.moeplan.json');
  const text = JSON.stringify({ schema: 'moe-studio.plan', version: 1, model: { folder: 'source', architecture: 'MixtralForCausalLM', numExperts: 4, numLayers: 1, topK: 2 }, calibration: { datasets: [] }, method: { name: 'frequency', parameters: {}, seed: 0 }, uniformExpertCount: true, exactInHuggingFace: { exact: true, reasons: [] }, layers: [{ layer: 0, keptExperts: [0, 1] }] });
  await writeFile(planFile, text);
  await assert.rejects(loadPlanForExport(planFile, [join(root, 'elsewhere')]), /x\.moeplan\.json names the model .*a\/b\/source/);
  // With root as the workspace it is found.
  const loaded = await loadPlanForExport(planFile, [root]);
  assert.equal(loaded.source.folder, source.folder);
  await loaded.source.weights.close();
});
