import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MAX_ELEMENT_PROBLEMS, type MoePlan, type PlanProblem, formatPlan, parsePlan } from '../../../server/src/plan/planFile';
import { tinySpec } from './tinySpec';

function basePlan(layers: unknown[], overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    schema: 'moe-studio.plan',
    version: 1,
    model: { folder: 'model', architecture: 'MixtralForCausalLM', numExperts: 8, numLayers: 2, topK: 2 },
    calibration: { datasets: ['data/code.jsonl'] },
    method: { name: 'manual', parameters: {}, seed: 0 },
    uniformExpertCount: true,
    exactInHuggingFace: { exact: true, reasons: [] },
    layers,
    ...overrides,
  };
}

/** The text a problem points at. */
function at(text: string, problem: PlanProblem): string {
  return text.slice(problem.range.offset, problem.range.offset + problem.range.length);
}

function applyFix(text: string, problem: PlanProblem): string {
  const edits = [...problem.fix!.edits].sort((a, b) => b.offset - a.offset);
  return edits.reduce((t, e) => t.slice(0, e.offset) + e.newText + t.slice(e.offset + e.length), text);
}

const both = (kept: number[]) => [{ layer: 0, keptExperts: kept }, { layer: 1, keptExperts: kept }];

test('a well-formed plan parses without problems and survives format → parse', () => {
  const text = formatPlan(basePlan(both([0, 2, 5, 7])) as unknown as MoePlan);
  const parsed = parsePlan(text, tinySpec());
  assert.deepEqual(parsed.problems, []);
  assert.equal(parsed.valid, true);
  assert.deepEqual(parsed.plan!.layers[1], { layer: 1, keptExperts: [0, 2, 5, 7], mergeMatrix: undefined, routerMap: undefined, outputScale: undefined, neuronOrder: undefined, topK: undefined, adaptiveThreshold: undefined });
  assert.equal(parsed.layerRanges.length, 2);
  assert.match(text, /"keptExperts": \[0, 2, 5, 7\]/);
});

test('syntax errors and wrong types are reported where they are', () => {
  const broken = parsePlan('{"schema": "moe-studio.plan", "version": 1,, }');
  assert.ok(broken.problems.some((p) => p.code === 'syntax'));
  const text = JSON.stringify(basePlan([{ layer: 0, keptExperts: [1, 'two'] }], { schema: 'other', uniformExpertCount: 'yes' }));
  const problems = parsePlan(text).problems;
  const wrong = (s: string) => problems.find((p) => at(text, p) === s)!;
  assert.equal(wrong('"two"').message, 'expected an integer ≥ 0');
  assert.equal(wrong('"yes"').message, 'expected true or false');
  assert.equal(applyFix(text, wrong('"other"')), text.replace('"other"', '"moe-studio.plan"'));
  const missing = parsePlan(JSON.stringify({ schema: 'moe-studio.plan', version: 1 })).problems.map((p) => p.message);
  assert.ok(missing.includes('missing required property "layers"'));
});

test('duplicate expert ids point at the second occurrence and the fix removes it with its matrix rows', () => {
  const layer = { layer: 0, keptExperts: [1, 4, 1], mergeMatrix: [[0, 1, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 0, 0, 0], [0, 1, 0, 0, 0, 0, 0, 0]] };
  const text = formatPlan(basePlan([layer, { layer: 1, keptExperts: [1, 4, 1] }]) as unknown as MoePlan);
  const [duplicate] = parsePlan(text, tinySpec()).problems.filter((p) => p.code === 'duplicateExpert');
  assert.equal(duplicate.message, 'expert 1 is listed twice');
  assert.equal(duplicate.range.offset, text.indexOf('[1, 4, 1]') + 7);
  assert.equal(at(text, duplicate), '1');
  const fixed = parsePlan(applyFix(text, duplicate), tinySpec());
  assert.deepEqual(fixed.plan!.layers[0].keptExperts, [1, 4]);
  assert.equal(fixed.plan!.layers[0].mergeMatrix!.length, 2);
  assert.ok(!fixed.problems.some((p) => p.code === 'matrixShape'));
});

test('unknown experts, matrix shapes, empty and non-MoE layers, duplicate layers', () => {
  const layers = [
    { layer: 0, keptExperts: [0, 9] },
    { layer: 1, keptExperts: [0, 1], routerMap: [[1, 0, 0, 0, 0, 0, 0, 0]], mergeMatrix: [[1, 0, 0], [0, 1, 0, 0, 0, 0, 0, 0]] },
    { layer: 1, keptExperts: [] },
    { layer: 2, keptExperts: [0] },
  ];
  const text = JSON.stringify(basePlan(layers), null, 1);
  const problems = parsePlan(text, tinySpec({ numLayers: 3, denseLayers: [2] })).problems;
  const byCode = (code: string) => problems.filter((p) => p.code === code);
  assert.equal(byCode('unknownExpert').length, 1);
  assert.equal(at(text, byCode('unknownExpert')[0]), '9');
  const shapes = byCode('matrixShape');
  assert.deepEqual(shapes.map((p) => p.message), [
    'mergeMatrix row has 3 columns; it needs one per original expert (8)',
    'routerMap has 1 rows; it needs one per kept expert (2)',
  ]);
  assert.ok(at(text, shapes[0]).startsWith('[') && at(text, shapes[0]).replace(/\s/g, '') === '[1,0,0]');
  assert.equal(at(text, byCode('emptyLayer')[0]), '[]');
  assert.equal(byCode('duplicateLayer').length, 1);
  assert.equal(byCode('notMoeLayer')[0].message, 'layer 2 is a dense layer, not an MoE layer');
  assert.equal(at(text, byCode('notMoeLayer')[0]), '2');
});

test('plan/model mismatch is reported on the model field, with a fix', () => {
  const text = JSON.stringify(basePlan(both([0, 1, 2, 3])), null, 2);
  const problems = parsePlan(text, tinySpec({ numExperts: 16 })).problems.filter((p) => p.code === 'modelMismatch');
  assert.equal(problems.length, 1);
  assert.equal(problems[0].message, 'the model has numExperts 16, the plan says 8');
  assert.equal(at(text, problems[0]), '8');
  assert.match(applyFix(text, problems[0]), /"numExperts": 16/);
});

test('pruning past UNCURL\'s threshold warns: 4× for 8 experts, 2× for 64', () => {
  const eight = JSON.stringify(basePlan(both([0, 1])));
  assert.deepEqual(parsePlan(eight, tinySpec()).problems.filter((p) => p.code === 'pruningFactor'), []);
  const pastFour = JSON.stringify(basePlan([{ layer: 0, keptExperts: [0], topK: 1 }, { layer: 1, keptExperts: [0, 1] }], { uniformExpertCount: false, exactInHuggingFace: { exact: false, reasons: [] } }));
  const warning = parsePlan(pastFour, tinySpec()).problems.filter((p) => p.code === 'pruningFactor');
  assert.equal(warning.length, 1);
  assert.equal(warning[0].severity, 'warning');
  assert.equal(at(pastFour, warning[0]), '[0]');
  const kept = (n: number) => Array.from({ length: n }, (_, i) => i);
  const model = { folder: 'm', architecture: 'MixtralForCausalLM', numExperts: 64, numLayers: 1 };
  const count = (n: number) => parsePlan(JSON.stringify(basePlan([{ layer: 0, keptExperts: kept(n) }], { model }))).problems.filter((p) => p.code === 'pruningFactor').length;
  assert.equal(count(32), 0);
  assert.equal(count(31), 1);
});

test('top-k above the kept count, and claims that no longer hold after an edit', () => {
  const text = JSON.stringify(basePlan([{ layer: 0, keptExperts: [0, 1], topK: 3 }, { layer: 1, keptExperts: [0, 1, 2], adaptiveThreshold: 0.2 }]));
  const problems = parsePlan(text, tinySpec()).problems;
  const topK = problems.find((p) => p.code === 'topK')!;
  assert.equal(at(text, topK), '3');
  assert.match(applyFix(text, topK), /"topK":2/);
  const claims = problems.filter((p) => p.code === 'claimMismatch');
  assert.deepEqual(claims.map((p) => at(text, p)), ['true', 'true']);
  const fixed = claims.reduceRight((t, p) => applyFix(t, p), text);
  const reparsed = parsePlan(fixed, tinySpec()).plan!;
  assert.equal(reparsed.uniformExpertCount, false);
  assert.equal(reparsed.exactInHuggingFace.exact, false);
  assert.match(reparsed.exactInHuggingFace.stockLoaders!, /different expert counts \(2, 3\)/);
});

test('output scales: one per kept expert, and a removed duplicate takes its scale with it', () => {
  const wrong = JSON.stringify(basePlan([{ layer: 0, keptExperts: [0, 1, 2], outputScale: [1, 2] }, { layer: 1, keptExperts: [0, 1, 2] }]));
  const shape = parsePlan(wrong, tinySpec()).problems.find((p) => p.code === 'matrixShape')!;
  assert.match(shape.message, /outputScale has 2 entries; it needs one per kept expert \(3\)/);
  const duplicate = JSON.stringify(basePlan([{ layer: 0, keptExperts: [0, 1, 1], outputScale: [1, 2, 3] }, { layer: 1, keptExperts: [0, 1, 2] }]));
  const fix = parsePlan(duplicate, tinySpec()).problems.find((p) => p.code === 'duplicateExpert')!;
  const fixed = parsePlan(applyFix(duplicate, fix), tinySpec()).plan!;
  assert.deepEqual(fixed.layers[0].keptExperts, [0, 1]);
  assert.deepEqual(fixed.layers[0].outputScale, [1, 2]);
});

test('neuron orders: parsed per expert, survive format → parse, and each is a permutation of the expert\'s neurons beside a mergeMatrix', () => {
  const merge = [[0.5, 0.5, 0, 0, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0, 0, 0]];
  const layers = (neuronOrder: unknown, extra: Record<string, unknown> = {}) => [{ layer: 0, keptExperts: [0, 2], mergeMatrix: merge, neuronOrder, ...extra }, { layer: 1, keptExperts: [0, 2] }];
  const text = formatPlan(basePlan(layers({ 1: [2, 0, 1] })) as unknown as MoePlan);
  assert.match(text, /"neuronOrder": \{\n\s+"1": \[2, 0, 1\]\n/);
  const parsed = parsePlan(text, tinySpec());
  assert.deepEqual(parsed.problems, []);
  assert.deepEqual(parsed.plan!.layers[0].neuronOrder, { 1: [2, 0, 1] });
  const problems = (neuronOrder: unknown, extra?: Record<string, unknown>, spec = tinySpec()) => {
    const source = JSON.stringify(basePlan(layers(neuronOrder, extra)));
    return parsePlan(source, spec).problems.filter((p) => p.severity === 'error').map((p) => [p.code, p.message, at(source, p)]);
  };
  assert.deepEqual(problems({ 1: [0, 0, 1] }), [['neuronOrder', 'neuronOrder of expert 1 lists neuron 0 twice', '[0,0,1]']]);
  assert.deepEqual(problems({ 1: [1, 0] }), [['neuronOrder', 'neuronOrder of expert 1 has 2 entries; an expert has 3 intermediate neurons', '[1,0]']]);
  assert.deepEqual(problems({ 1: [0, 1, 3] }), [['neuronOrder', 'neuronOrder of expert 1 has 3, not a neuron in 0..2', '[0,1,3]']]);
  assert.deepEqual(problems({ 9: [0, 1, 2] }), [['unknownExpert', 'neuronOrder names expert "9": layer 0 has experts 0..7', '"9"']]);
  assert.deepEqual(problems({ 1: [2, 0, 1] }, { mergeMatrix: undefined }).map(([code, message]) => [code, message]), [['neuronOrder', 'neuronOrder renumbers experts that are merged; it needs a mergeMatrix']]);
  const [fused] = problems({ 1: [2, 0, 1] }, {}, tinySpec({ fusedExperts: true }));
  assert.equal(fused[0], 'neuronOrder');
  assert.match(fused[1], /neuronOrder cannot apply to layer 0: .* fused/);
  // Without the model, the first order's length stands for the neuron count.
  const source = JSON.stringify(basePlan(layers({ 1: [1, 0], 3: [0, 1, 2] })));
  assert.deepEqual(parsePlan(source).problems.map((p) => p.message), ['neuronOrder of expert 3 has 3 entries; an expert has 2 intermediate neurons']);
});

test('a duplicate beside an id the parser drops: the fix removes the element, and rows only when there is one per element (fuzz regression)', () => {
  // keptExperts as written has 4 elements, of which the parser keeps 3 ids (-1 is not an expert);
  // the 3-row matrix lines up with neither, so the fix must not reach for a fourth row.
  const text = JSON.stringify(basePlan([{ layer: 0, keptExperts: [0, -1, 0, 0], mergeMatrix: [[], {}, 0] }]));
  const duplicates = parsePlan(text, tinySpec()).problems.filter((p) => p.code === 'duplicateExpert');
  assert.ok(duplicates.length > 0);
  const last = duplicates[duplicates.length - 1];
  assert.equal(last.fix!.edits.length, 1, 'no matrix row is removed');
  assert.match(applyFix(text, last), /"keptExperts":\[0,-1,0\],"mergeMatrix":\[\[\],\{\},0\]/);
  // With a row per written element, the element's own row goes with it.
  const aligned = JSON.stringify(basePlan([{ layer: 0, keptExperts: [0, 1, 1], mergeMatrix: [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]] }]));
  const fix = parsePlan(aligned, tinySpec()).problems.find((p) => p.code === 'duplicateExpert')!;
  assert.match(applyFix(aligned, fix), /"keptExperts":\[0,1\],"mergeMatrix":\[\[1,0,0,0\],\[0,1,0,0\]\]/);
});

test('per-element problems of one array are capped, the rest summed up in one problem on the array (a hostile plan from the fuzz suite, plan-f6ae20…)', () => {
  // 100,000 entries of expert 1 (99,999 duplicates) and 1,000 of expert 9 (none exists in 8; 999 more duplicates).
  const kept = [...new Array<number>(100_000).fill(1), ...new Array<number>(1_000).fill(9)];
  const rows = Array.from({ length: 300 }, () => [1, 0]);
  const text = formatPlan(basePlan([{ layer: 0, keptExperts: kept, mergeMatrix: rows }]) as unknown as MoePlan);
  const problems = parsePlan(text, tinySpec()).problems;
  const duplicates = problems.filter((p) => p.code === 'duplicateExpert');
  assert.equal(duplicates.length, MAX_ELEMENT_PROBLEMS + 1);
  assert.ok(duplicates.slice(0, MAX_ELEMENT_PROBLEMS).every((p) => p.message === 'expert 1 is listed twice' && p.fix));
  assert.equal(duplicates[MAX_ELEMENT_PROBLEMS].message, `${(99_999 + 999 - MAX_ELEMENT_PROBLEMS).toLocaleString('en-US')} more experts listed twice in layer 0's keptExperts`);
  assert.match(at(text, duplicates[MAX_ELEMENT_PROBLEMS]), /^\[\s*1,/, 'the summary points at the whole keptExperts array');
  const unknown = problems.filter((p) => p.code === 'unknownExpert');
  assert.equal(unknown.length, MAX_ELEMENT_PROBLEMS + 1);
  assert.equal(unknown[MAX_ELEMENT_PROBLEMS].message, `${1_000 - MAX_ELEMENT_PROBLEMS} more experts that do not exist in layer 0's keptExperts`);
  // 300 rows of 2 columns where 8 are needed, and one problem for the row count (300 rows, 101,000 kept).
  const shapes = problems.filter((p) => p.code === 'matrixShape');
  assert.deepEqual(shapes.map((p) => p.message).slice(-1), [`${300 - MAX_ELEMENT_PROBLEMS} more rows of mergeMatrix in layer 0 have the wrong number of columns`]);
  assert.equal(shapes.length, 1 + MAX_ELEMENT_PROBLEMS + 1);
});
