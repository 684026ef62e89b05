import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { generatePlan } from '../../../server/src/plan/generatePlan';
import { analyseHfExactness } from '../../../server/src/plan/hfExactness';
import { formatPlan, parsePlan } from '../../../server/src/plan/planFile';
import { toRuntimePlan } from '../../../server/src/plan/runtimeConversion';
import { predictSavings } from '../../../server/src/plan/savings';
import type { LayerStatistics } from '../../../server/src/plan/statistics';
import { resolveLayerPlan } from '../../../server/src/runtime/runtimePlan';
import { Prng } from '../../support/prng';
import { tinySpec } from './tinySpec';

test('prune-only layers become a mask over E; merged layers become E\' × E matrices the runtime accepts', () => {
  const spec = tinySpec({ numExperts: 4 });
  const runtime = toRuntimePlan([
    { layer: 0, keptExperts: [3, 1], topK: 1 },
    { layer: 1, keptExperts: [0, 2], mergeMatrix: [[0.5, 0.5, 0, 0], [0, 0, 1, 0]] },
  ], 4);
  assert.deepEqual(runtime.layers[0], { keptExperts: [false, true, false, true], topK: 1 });
  assert.deepEqual(runtime.layers[1], { routerMap: [[1, 0, 0, 0], [0, 0, 1, 0]], mergeMatrix: [[0.5, 0.5, 0, 0], [0, 0, 1, 0]] });
  const moe = spec.layers[0].kind === 'moe' ? spec.layers[0].moe : assert.fail();
  assert.equal(resolveLayerPlan(0, moe, runtime.layers[0]).routedExperts, 4);
  assert.equal(resolveLayerPlan(1, moe, runtime.layers[1]).routedExperts, 2);
  // A layer that keeps everything and changes nothing is left out: it runs unchanged.
  assert.deepEqual(toRuntimePlan([{ layer: 0, keptExperts: [0, 1, 2, 3] }], 4), { layers: {} });
});

test('HF exactness: pruning and merging are exact; adaptive gating and per-layer counts or top-k are not', () => {
  for (const normTopKProb of [true, false]) {
    const spec = tinySpec({ normTopKProb });
    assert.deepEqual(analyseHfExactness([{ layer: 0, keptExperts: [0, 1, 2, 3] }, { layer: 1, keptExperts: [4, 5, 6, 7] }], spec), { exact: true, reasons: [] });
  }
  const spec = tinySpec();
  const merged = [0, 1].map((layer) => ({ layer, keptExperts: [0, 1], routerMap: [[1, 1, 0, 0, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0, 0, 0]], mergeMatrix: [[0.5, 0.5, 0, 0, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0, 0, 0]] }));
  assert.equal(analyseHfExactness(merged, spec).exact, true);
  const adaptive = analyseHfExactness([{ layer: 0, keptExperts: [0, 1, 2, 3, 4, 5, 6, 7], adaptiveThreshold: 0.2 }], spec);
  assert.equal(adaptive.exact, false);
  assert.match(adaptive.reasons[0], /adaptive gating \(layers 0\)/);
  // Only layer 0 is listed: layer 1 keeps all 8, so counts differ.
  const budgeted = analyseHfExactness([{ layer: 0, keptExperts: [0, 1, 2, 3] }], spec);
  assert.equal(budgeted.exact, true, 'per-layer counts export exactly (the config extension)');
  assert.match(budgeted.stockLoaders!, /different expert counts \(4, 8\).*stock loaders need the same count/);
  assert.equal(analyseHfExactness([0, 1].map((layer) => ({ layer, keptExperts: [0, 1, 2, 3] })), spec).stockLoaders, undefined);
  assert.match(analyseHfExactness([{ layer: 0, keptExperts: [0, 1], topK: 1 }, { layer: 1, keptExperts: [0, 1] }], spec).reasons[0], /different top-k \(1, 2\)/);
  assert.equal(analyseHfExactness([0, 1].map((layer) => ({ layer, keptExperts: [0, 1, 2], topK: 1 })), spec).exact, true);
});

test('savings, hand-computed for the tiny spec', () => {
  // Embeddings + lm_head 2·10·4 = 80, final norm 4. Per layer: attention q,o 2·4·4 + k,v 2·4·2 = 48,
  // norms 8, router 8·4 = 32, experts 8 · 3·4·3 = 288: 376. Active per layer: 48 + 8 + 32 + 2·36 = 160.
  const savings = predictSavings(tinySpec(), [{ layer: 0, keptExperts: [0, 1, 2, 3] }], 'BF16');
  // Layer 0 after: 56 + router 4·4 + 4·36 = 216; active 56 + 16 + 72 = 144.
  assert.deepEqual(savings, {
    dtype: 'BF16',
    parameters: { before: 84 + 2 * 376, after: 84 + 216 + 376 },
    bytes: { before: 2 * 836, after: 2 * 676 },
    activeParametersPerToken: { before: 84 + 2 * 160, after: 84 + 144 + 160 },
  });
});

test('generatePlan records the method and seed, and its output parses cleanly', async () => {
  const spec = tinySpec();
  const statistics: LayerStatistics[] = [0, 1].map((layer) => ({
    layer,
    tokenCount: [5, 0, 9, 3, 7, 1, 8, 2],
    softCount: [2, 0, 4, 1, 3, 0.5, 3.5, 1],
    gatingCurve: { threshold: [0, 1], singleExpertShare: [1, 0] },
  }));
  const plan = await generatePlan({ name: 'frequency' }, { statistics }, {
    spec, model: { folder: 'model' }, calibration: { datasets: ['data/code.jsonl'] }, dtype: 'F32', targetExperts: 4, seed: 9, singleExpertShare: 0.25,
  });
  assert.deepEqual(plan.method, { name: 'frequency', parameters: { targetExperts: 4, singleExpertShare: 0.25 }, seed: 9 });
  assert.deepEqual(plan.layers[0], { layer: 0, keptExperts: [0, 2, 4, 6], adaptiveThreshold: 0.75 });
  assert.equal(plan.uniformExpertCount, true);
  assert.equal(plan.exactInHuggingFace.exact, false);
  const parsed = parsePlan(formatPlan(plan), spec);
  assert.deepEqual(parsed.problems, []);
  const eep = await generatePlan({ name: 'eep', populationSize: 4, generations: 2, phases: ['prune'] }, { fitness: async () => 1 }, {
    spec, model: { folder: 'model' }, calibration: { datasets: [] }, dtype: 'F32', targetExperts: 6, seed: 2,
  });
  assert.equal(eep.method.parameters.populationSize, 4);
  assert.equal(eep.method.seed, 2);
  assert.deepEqual(parsePlan(formatPlan(eep), spec).problems, []);
});

/** Just the draft-07 keywords the plan schema uses, enough to check a generated plan against it. */
function validate(schema: Record<string, any>, value: unknown, root: Record<string, any>, path = '$'): string[] {
  if (schema.$ref) return validate(root.definitions[schema.$ref.split('/').pop()], value, root, path);
  const errors: string[] = [];
  const kind = Array.isArray(value) ? 'array' : Number.isInteger(value) ? 'integer' : typeof value;
  if (schema.type && !(schema.type === kind || (schema.type === 'number' && kind === 'integer'))) return [`${path}: ${kind} is not ${schema.type}`];
  if ('const' in schema && schema.const !== value) errors.push(`${path}: not ${schema.const}`);
  if (schema.enum && !schema.enum.includes(value)) errors.push(`${path}: ${value} not in enum`);
  if (schema.minimum !== undefined && (value as number) < schema.minimum) errors.push(`${path}: below minimum`);
  if (kind === 'object') {
    const object = value as Record<string, unknown>;
    for (const key of schema.required ?? []) if (!(key in object)) errors.push(`${path}: missing ${key}`);
    for (const [key, child] of Object.entries(object)) {
      if (schema.properties?.[key]) errors.push(...validate(schema.properties[key], child, root, `${path}.${key}`));
      else if (schema.additionalProperties === false) errors.push(`${path}: unexpected ${key}`);
    }
  }
  if (kind === 'array' && schema.items) (value as unknown[]).forEach((item, i) => errors.push(...validate(schema.items, item, root, `${path}[${i}]`)));
  return errors;
}

test('the JSON schema is valid JSON and accepts generated plans', async () => {
  const schema = JSON.parse(readFileSync(join(import.meta.dirname, '../../../schemas/moeplan.schema.json'), 'utf8'));
  assert.equal(schema.$schema, 'http://json-schema.org/draft-07/schema#');
  const spec = tinySpec();
  const statistics: LayerStatistics[] = [0, 1].map((layer) => ({
    layer, tokenCount: [5, 0, 9, 3, 7, 1, 8, 2], softCount: [0, 0, 0, 0, 0, 0, 0, 0],
    routerLogitSimilarity: Array.from({ length: 8 }, (_, i) => Array.from({ length: 8 }, (_, j) => (i === j || (i ^ j) === 1 ? 1 : 0))),
  }));
  // Random experts (I = 3, H = 4): UNCURL's default alignment writes neuron orders, which the schema must accept.
  const prng = new Prng(5);
  const experts = Array.from({ length: 8 }, () => ({ gate: prng.normalArray(12, 0, 1), up: prng.normalArray(12, 0, 1), down: prng.normalArray(12, 0, 1) }));
  const alignment = { hidden: 4, intermediate: () => 3, refusal: () => undefined, expert: async (_layer: number, id: number) => experts[id] };
  const plan = await generatePlan({ name: 'uncurl' }, { statistics, alignment }, { spec, model: { folder: 'model', fingerprint: 'abc' }, calibration: { datasets: ['a.jsonl'] }, dtype: 'BF16', targetExperts: 4 });
  assert.equal(plan.method.parameters.neuronAlignment, true);
  const reparsed = JSON.parse(formatPlan(plan));
  assert.ok(reparsed.layers.some((l: { neuronOrder?: object }) => l.neuronOrder), 'some merged expert was renumbered');
  assert.deepEqual(parsePlan(formatPlan(plan), spec).problems, []);
  assert.deepEqual(validate(schema, reparsed, schema), []);
  assert.deepEqual(reparsed.layers[0].keptExperts, [0, 2, 4, 6]); // pairs {0,1} {2,3} {4,5} {6,7}, the more used survives
  assert.deepEqual(validate(schema, { ...reparsed, layers: [{ layer: 0 }] }, schema), ['$.layers[0]: missing keptExperts']);
});
