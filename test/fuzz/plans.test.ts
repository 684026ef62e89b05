/** Fuzzing plan files: the parser and the editor's diagnostics never throw; the export preview fails cleanly. */
import fc from 'fast-check';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import type { ModelSpec } from '../../server/src/checkpoint/modelSpec';
import { previewPlanFile } from '../../server/src/export/exportPlanFile';
import { analysePlanText } from '../../server/src/lsp/plan/analysis';
import { writeRandomCheckpoint } from '../support/randomCheckpoint';
import { afterSurfaces, beforeSurfaces, FUZZ_TMP, expectCleanOutcome, fuzzSurface, hostileJson, jsonText, INPUT_TIME_LIMIT_MS, surface } from './harness';

let root: string;
let spec: ModelSpec;
beforeSurfaces(async () => {
  root = mkdtempSync(path.join(FUZZ_TMP, 'moe-fuzz-plans-'));
  ({ spec } = await writeRandomCheckpoint(path.join(root, 'model'), { architecture: 'MixtralForCausalLM', numLayers: 2, numExperts: 4, topK: 2, hiddenSize: 8, numHeads: 2, numKvHeads: 1, expertIntermediateSize: 8 }));
});
afterSurfaces(() => rmSync(root, { recursive: true, force: true }));

const validPlan = () => ({
  schema: 'moe-studio.plan',
  version: 1,
  model: { folder: '../model', architecture: 'MixtralForCausalLM', numExperts: 4, numLayers: 2, topK: 2 },
  method: { name: 'frequency', parameters: { targetExperts: 2 }, seed: 0 },
  layers: [
    { layer: 0, keptExperts: [0, 2] },
    { layer: 1, keptExperts: [1, 3], mergeMatrix: [[0, 1, 0, 0], [0, 0, 0.5, 0.5]], adaptiveThreshold: 0.3 },
  ],
});

const layerValue = fc.oneof(
  fc.record({ layer: fc.oneof(fc.nat(3), hostileJson), keptExperts: fc.oneof(fc.array(fc.integer({ min: -1, max: 5 }), { maxLength: 5 }), hostileJson), mergeMatrix: hostileJson, routerMap: hostileJson, adaptiveThreshold: hostileJson, neuronOrder: fc.oneof(fc.dictionary(fc.constantFrom('0', '1', '3', '9', '-1', 'x', '__proto__'), fc.oneof(fc.array(fc.integer({ min: -1, max: 9 }), { maxLength: 9 }), hostileJson), { maxKeys: 3 }), hostileJson) }, { requiredKeys: [] }),
  hostileJson,
);
const planInputs = jsonText(
  fc.oneof(
    { weight: 4, arbitrary: fc.tuple(fc.dictionary(fc.constantFrom('schema', 'version', 'model', 'method', 'layers', 'calibration', 'evaluations', 'uniformExpertCount', '__proto__'), hostileJson, { maxKeys: 2 }), fc.array(layerValue, { maxLength: 3 })).map(([changes, layers]) => ({ ...validPlan(), ...(layers.length ? { layers } : {}), ...changes })) },
    { weight: 1, arbitrary: hostileJson },
  ),
);

surface('plan', 'fuzz: plan files (parser, diagnostics, export preview)', async () => {
  // One plan file beside the model, overwritten by each input.
  const folder = path.join(root, 'case');
  mkdirSync(folder);
  const file = path.join(folder, 'x.moeplan.json');
  await fuzzSurface('plan', planInputs, async (bytes) => {
    const text = new TextDecoder().decode(bytes);
    // The editor's model of a plan: problems, never an exception. Analysis is synchronous, so its
    // cost is CPU time: wall time on the shared machine measured the other sessions' load.
    const cpuBefore = process.cpuUsage();
    analysePlanText(text, 1, spec);
    analysePlanText(text, 1, undefined);
    const cpu = process.cpuUsage(cpuBefore);
    assert.ok((cpu.user + cpu.system) / 1000 < INPUT_TIME_LIMIT_MS, `analysing the plan took ${Math.round((cpu.user + cpu.system) / 1000)} CPU-ms`);
    writeFileSync(file, bytes);
    // The plan's "model" folder ("../model") is relative to the plan: the checkpoint beside its folder.
    await expectCleanOutcome(file, () => previewPlanFile(file));
  });
});
