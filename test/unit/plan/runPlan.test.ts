import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { PlanMethodName } from '../../../common/protocol';
import { parsePlan } from '../../../server/src/plan';
import type { EepSearchRecord } from '../../../server/src/plan';
import { eepSearch } from '../../../server/src/plan/methods/eep';
import { mergedMembers } from '../../../server/src/plan/methods/eepAlignment';
import { Calibration, generatePlanFile, layerPreview, makePlan, planRelativePath, readPlanToResume, toPlanStatistics } from '../../../server/src/plan/run';
import { modelIdentity, profileDataset, RuntimePool } from '../../../server/src/profile/run';
import { defaultProfilePath, loadProfile } from '../../../server/src/profile/profileFile';
import { writeRandomCheckpoint, type RandomCheckpoint } from '../../support/randomCheckpoint';

const METHODS: PlanMethodName[] = ['random', 'frequency', 'softCount', 'reap', 'naee', 'uncurl', 'eep'];
const SMALL_EEP = { budget: 12, populationSize: 4, generations: 2, eliteSize: 2 };

describe('plan generation from a model and calibration data', () => {
  let dir: string;
  let checkpoint: RandomCheckpoint;
  let calibrationFile: string;
  const runtimes = new RuntimePool();

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-plan-run-'));
    checkpoint = await writeRandomCheckpoint(path.join(dir, 'model'), { architecture: 'MixtralForCausalLM', numLayers: 2, numExperts: 8, topK: 2, seed: 5 });
    calibrationFile = path.join(dir, 'calibration.jsonl');
    const rows = Array.from({ length: 12 }, (_, i) => ({ text: `row ${i}: ${'lorem ipsum dolor sit amet '.repeat(1 + (i % 3))}${i * 7}` }));
    fs.writeFileSync(calibrationFile, rows.map((row) => JSON.stringify(row)).join('\n') + '\n');
  });

  after(async () => {
    await runtimes.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  for (const method of METHODS) {
    it(`writes a valid plan file with ${method}`, async () => {
      const output = path.join(dir, `${method}.moeplan.json`);
      const { planPath, plan } = await generatePlanFile({
        model: checkpoint.folder, method, targetExperts: 4, seed: 1, calibration: [{ file: calibrationFile }], output, workspaceFolder: dir, runtimes, threads: 1,
        parameters: method === 'eep' ? SMALL_EEP : undefined,
      });
      assert.equal(planPath, output);
      const parsed = parsePlan(fs.readFileSync(output, 'utf8'), checkpoint.spec);
      assert.deepEqual(parsed.problems.filter((p) => p.severity === 'error'), []);
      assert.ok(parsed.valid);
      assert.equal(plan.method.name, method);
      assert.equal(plan.model.folder, 'model');
      assert.deepEqual(plan.calibration.datasets, ['calibration.jsonl']);
      assert.equal(plan.model.fingerprint, (await modelIdentity(checkpoint.folder)).fingerprint);
      for (const layer of plan.layers) assert.equal(layer.keptExperts.length, 4);
    });
  }

  it('repairs a plan: router refit and output compensation, exact (scale 1, rows unchanged) when every expert stays', async () => {
    for (const keep of [8, 4]) {
      const output = path.join(dir, `repaired-${keep}.moeplan.json`);
      const { plan } = await generatePlanFile({
        model: checkpoint.folder, method: 'frequency', targetExperts: keep, seed: 0, calibration: [{ file: calibrationFile }], output, runtimes, threads: 1,
        parameters: { repairs: ['routerRefit', 'outputCompensation'] },
      });
      const parsed = parsePlan(fs.readFileSync(output, 'utf8'), checkpoint.spec);
      assert.ok(parsed.valid, JSON.stringify(parsed.problems));
      assert.deepEqual(plan.method.parameters.repairs, ['routerRefit', 'outputCompensation']);
      assert.ok(plan.exactInHuggingFace.exact);
      for (const layer of plan.layers) {
        assert.equal(layer.outputScale!.length, keep);
        assert.equal(layer.routerMap!.length, keep);
        if (keep === 8) {
          layer.outputScale!.forEach((s) => assert.ok(Math.abs(s - 1) < 1e-3, `scale ${s}`));
          layer.routerMap!.forEach((row, i) => row.forEach((w, j) => assert.ok(Math.abs(w - (i === j ? 1 : 0)) < 1e-3, `router ${i},${j}: ${w}`)));
        } else {
          assert.ok(layer.outputScale!.every((s) => Number.isFinite(s) && s > 0), String(layer.outputScale));
        }
      }
    }
    await assert.rejects(
      generatePlanFile({ model: checkpoint.folder, method: 'frequency', targetExperts: 4, seed: 0, calibration: [{ file: calibrationFile }], output: path.join(dir, 'bad-repair.moeplan.json'), runtimes, threads: 1, parameters: { repairs: ['polish'] } }),
      /"repairs" must list/,
    );
  });

  it('shares a global expert budget out across layers by measured loss, and records it', async () => {
    const output = path.join(dir, 'budget.moeplan.json');
    const { plan } = await generatePlanFile({
      model: checkpoint.folder, method: 'frequency', seed: 0, calibration: [{ file: calibrationFile }], output, runtimes, threads: 1, parameters: { keepShare: 0.5 },
    });
    const parsed = parsePlan(fs.readFileSync(output, 'utf8'), checkpoint.spec);
    assert.ok(parsed.valid, JSON.stringify(parsed.problems));
    assert.equal(plan.layers.reduce((sum, l) => sum + l.keptExperts.length, 0), 8, 'half of 2 × 8 experts');
    assert.ok(plan.layers.every((l) => l.keptExperts.length >= 2), 'never below top-k');
    assert.equal(plan.method.parameters.keepShare, 0.5);
    assert.deepEqual(plan.method.parameters.targetExperts, Object.fromEntries(plan.layers.map((l) => [l.layer, l.keptExperts.length])));
    assert.equal(plan.exactInHuggingFace.exact, true);
    assert.equal(plan.uniformExpertCount, plan.exactInHuggingFace.stockLoaders === undefined);
    await assert.rejects(
      generatePlanFile({ model: checkpoint.folder, method: 'frequency', seed: 0, calibration: [{ file: calibrationFile }], output: path.join(dir, 'budget-bad.moeplan.json'), runtimes, threads: 1, parameters: { keepShare: 1.5 } }),
      /keepShare/,
    );
  });

  it('measures a calibration\'s layer cost curves once for every plan with a global budget', async () => {
    const identity = await modelIdentity(checkpoint.folder);
    const calibration = await Calibration.load(await runtimes.get(identity, 1), identity, [{ file: calibrationFile }]);
    try {
      const curves = calibration.layerCostCurves();
      assert.strictEqual(calibration.layerCostCurves(), curves, 'the same measurement, not a second one');
      const frequency = await makePlan(calibration, { method: 'frequency', seed: 0, parameters: { keepShare: 0.5 } }, { modelFolder: 'model', datasets: [] });
      const softCount = await makePlan(calibration, { method: 'softCount', seed: 0, parameters: { keepShare: 0.5 } }, { modelFolder: 'model', datasets: [] });
      assert.strictEqual(calibration.layerCostCurves(), curves);
      // Every layer's curve ends at the full model's loss, so both plans shared one baseline.
      const measured = await curves;
      assert.equal(new Set(measured.map((c) => c.cost[c.numExperts])).size, 1);
      assert.deepEqual(frequency.method.parameters.targetExperts, softCount.method.parameters.targetExperts, 'one allocation from one set of curves');
      assert.notStrictEqual(calibration.layerCostCurves(4), curves, 'another sample count is another measurement');
    } finally {
      await calibration.close();
    }
  });

  it('resumes an EEP search from its plan file: never worse than the plan it continues, and says so', async () => {
    const first = path.join(dir, 'eep-first.moeplan.json');
    const { plan: before } = await generatePlanFile({ model: checkpoint.folder, method: 'eep', targetExperts: 4, seed: 2, calibration: [{ file: calibrationFile }], output: first, runtimes, threads: 1, parameters: { ...SMALL_EEP, significance: 0 } });
    const resume = readPlanToResume(first);
    const { plan: after } = await generatePlanFile({ model: checkpoint.folder, method: 'eep', targetExperts: 4, seed: 3, calibration: [{ file: calibrationFile }], output: path.join(dir, 'eep-resumed.moeplan.json'), runtimes, threads: 1, parameters: { ...SMALL_EEP, significance: 0 }, resume });
    assert.ok((after.method.parameters.bestFitness as number) >= (before.method.parameters.bestFitness as number) - 1e-9);
    assert.deepEqual(after.method.parameters.resumedFrom, { plan: 'eep-first.moeplan.json', evaluations: before.method.parameters.evaluations, bestFitness: before.method.parameters.bestFitness });
    fs.writeFileSync(path.join(dir, 'broken.moeplan.json'), '{"schema": 1}');
    assert.throws(() => readPlanToResume(path.join(dir, 'broken.moeplan.json')), /not a valid plan/);
  });

  it('refuses to overwrite an existing plan file', async () => {
    const output = path.join(dir, 'exists.moeplan.json');
    fs.writeFileSync(output, '{}');
    await assert.rejects(
      generatePlanFile({ model: checkpoint.folder, method: 'frequency', targetExperts: 4, seed: 0, calibration: [{ file: calibrationFile }], output, runtimes, threads: 1 }),
      /already exists/,
    );
    assert.equal(fs.readFileSync(output, 'utf8'), '{}');
  });

  it('records (and plans from) the workspace\'s current profile of its calibration file, profiling it first when there is none', async () => {
    const workspace = fs.mkdtempSync(path.join(dir, 'workspace-'));
    const data = path.join(workspace, 'calibration.jsonl');
    fs.copyFileSync(calibrationFile, data);
    const generate = (name: string, calibration = [{ file: data }]) => generatePlanFile({ model: checkpoint.folder, method: 'frequency', targetExperts: 4, seed: 0, calibration, output: path.join(workspace, name), workspaceFolder: workspace, runtimes, threads: 1 });
    const relative = (file: string) => path.relative(workspace, file).split(path.sep).join('/');
    const keepsTopExpertsOf = (plan: { layers: { layer: number; keptExperts: number[] }[] }, profile: { layers: { layer: number; tokenCounts: number[] }[] }) => {
      for (const layer of plan.layers) {
        const counts = profile.layers.find((l) => l.layer === layer.layer)!.tokenCounts;
        const ranked = [...counts.keys()].sort((a, b) => counts[b] - counts[a] || a - b).slice(0, 4).sort((a, b) => a - b);
        assert.deepEqual([...layer.keptExperts].sort((a, b) => a - b), ranked, `layer ${layer.layer}`);
      }
    };

    // No profile yet: generation profiles the calibration file (saved where Profile saves it) and names it.
    const first = await generate('before.moeplan.json');
    const defaultPath = defaultProfilePath(workspace, data, checkpoint.folder);
    assert.equal(first.plan.calibration.profile, relative(defaultPath));
    const written = await loadProfile(defaultPath);
    assert.equal(written.dataset.rows, 12);
    assert.deepEqual(written.dataset.field, { kind: 'field', field: 'text' });
    // The saved profile's counts are the calibration's own, computed in memory without any profile.
    const identity = await modelIdentity(checkpoint.folder);
    const inMemory = await Calibration.load(await runtimes.get(identity, 1), identity, [{ file: data }]);
    try {
      const statistics = await inMemory.statistics();
      for (const layer of statistics) assert.deepEqual(written.layers.find((l) => l.layer === layer.layer)!.tokenCounts, layer.tokenCount, `layer ${layer.layer}`);
    } finally {
      await inMemory.close();
    }
    keepsTopExpertsOf(first.plan, written);

    // A profile the user made (other settings) is the one recorded and planned from.
    const { profile, profilePath } = await profileDataset({ datasetFile: data, modelFolder: checkpoint.folder, field: { kind: 'field', field: 'text' }, workspaceFolder: workspace, settings: { maxRows: 3, threads: 1 }, runtimes });
    const { plan } = await generate('after.moeplan.json');
    assert.equal(plan.calibration.profile, relative(profilePath));
    // Frequency keeps each layer's most used experts of that profile (3 rows, not the 12 calibration rows).
    keepsTopExpertsOf(plan, profile);

    // A changed file makes the profile stale: profiled again, so the plan follows the file as it is.
    fs.appendFileSync(data, JSON.stringify({ text: 'one more row' }) + '\n');
    const stale = await generate('stale.moeplan.json');
    assert.equal(stale.plan.calibration.profile, relative(defaultPath));
    const again = await loadProfile(defaultPath);
    assert.equal(again.dataset.rows, 13);
    keepsTopExpertsOf(stale.plan, again);

    // Several calibration files have no one profile: profiled in memory, none named.
    const second = path.join(workspace, 'second.jsonl');
    fs.copyFileSync(calibrationFile, second);
    assert.equal((await generate('two.moeplan.json', [{ file: data }, { file: second }])).plan.calibration.profile, undefined);
    assert.ok(!fs.existsSync(defaultProfilePath(workspace, second, checkpoint.folder)), 'a profile was written for a file of a multi-file calibration');
  });

  it('NAEE\'s layer error is 0 keeping every expert and grows as fewer are kept', async () => {
    const identity = await modelIdentity(checkpoint.folder);
    const calibration = await Calibration.load(await runtimes.get(identity, 1), identity, [{ file: calibrationFile }]);
    try {
      const reconstruction = await calibration.layerError();
      for (const layer of [0, 1]) {
        assert.ok(reconstruction.tokens(layer) > 0);
        assert.equal(await reconstruction.error(layer, [0, 1, 2, 3, 4, 5, 6, 7]), 0);
        // Nested subsets: fewer kept experts can only move the output as far or further (here strictly, somewhere).
        const six = await reconstruction.error(layer, [0, 1, 2, 3, 4, 5]);
        const two = await reconstruction.error(layer, [0, 1]);
        assert.ok(two >= six, `layer ${layer}: 6 kept ${six}, 2 kept ${two}`);
        assert.ok((await reconstruction.error(layer, [0, 1, 2, 3])) + (await reconstruction.error(layer, [4, 5, 6, 7])) > 0);
      }
    } finally {
      await calibration.close();
    }
  });

  it('EEP is reproducible from its seed, end to end', async () => {
    const run = async (name: string, seed: number) => (await generatePlanFile({
      model: checkpoint.folder, method: 'eep', targetExperts: 3, seed, calibration: [{ file: calibrationFile }], output: path.join(dir, `${name}.moeplan.json`), runtimes, threads: 1,
      parameters: { ...SMALL_EEP, budget: 16 },
    })).plan;
    const first = await run('eep-a', 7);
    const second = await run('eep-b', 7);
    assert.deepEqual(second.layers, first.layers);
    assert.equal(second.method.parameters.bestFitness, first.method.parameters.bestFitness);
    assert.ok(first.layers.some((layer) => layer.mergeMatrix), 'the merge phase ran');
    // The plan records the search's course for the preview chart: per phase, the plan's fitness per
    // generation (never falling, ending at the result) and the best candidate's (never below it).
    assert.deepEqual(second.method.parameters.search, first.method.parameters.search);
    const search = first.method.parameters.search as EepSearchRecord;
    const phases = [search.prune!, search.merge!];
    for (const { plan, candidate } of phases) {
      assert.equal(plan.length, candidate.length);
      plan.forEach((value, g) => assert.ok(candidate[g] >= value && (g === 0 || value >= plan[g - 1])));
    }
    assert.equal(search.merge!.plan.at(-1), Number((first.method.parameters.bestFitness as number).toFixed(6)));
  });

  it('EEP aligns its merged experts\' neurons by default, and records it; "neuronAlignment": false merges unaligned', async () => {
    const run = async (name: string, parameters: Record<string, unknown>) => (await generatePlanFile({
      model: checkpoint.folder, method: 'eep', targetExperts: 3, seed: 7, calibration: [{ file: calibrationFile }], output: path.join(dir, `${name}.moeplan.json`), runtimes, threads: 1,
      parameters: { ...SMALL_EEP, budget: 16, ...parameters },
    })).plan;
    const aligned = await run('eep-aligned', {});
    assert.equal(aligned.method.parameters.neuronAlignment, true);
    const merged = aligned.layers.filter((layer) => layer.mergeMatrix);
    assert.ok(merged.length > 0, 'the merge phase ran');
    for (const layer of merged) {
      // Random experts never align to the identity, so every expert the rule aligns has an order, and only those.
      assert.deepEqual(Object.keys(layer.neuronOrder ?? {}).map(Number), mergedMembers(layer), `layer ${layer.layer}`);
      for (const kept of layer.keptExperts) assert.equal(layer.neuronOrder?.[kept], undefined, 'kept experts keep their numbering');
    }
    const unaligned = await run('eep-unaligned', { neuronAlignment: false });
    assert.equal(unaligned.method.parameters.neuronAlignment, false);
    assert.ok(unaligned.layers.every((layer) => layer.neuronOrder === undefined));
    await assert.rejects(run('eep-bad-alignment', { neuronAlignment: 'no' }), /"neuronAlignment" must be true or false/);
  });

  it('EEP scoring a whole generation in one pass finds what scoring one candidate at a time finds', async () => {
    const identity = await modelIdentity(checkpoint.folder);
    const calibration = await Calibration.load(await runtimes.get(identity, 1), identity, [{ file: calibrationFile }]);
    try {
      const evaluator = calibration.evaluator(8);
      const layers = [{ layer: 0, numExperts: 8 }, { layer: 1, numExperts: 8 }];
      const options = { layers, target: 3, populationSize: 5, eliteSize: 2, generations: 2, budget: 20, seed: 4 };
      let oneAtATime = 0;
      let generations = 0;
      const single = await eepSearch({ ...options, fitness: (plan) => (oneAtATime++, evaluator.score(plan)) });
      const batched = await eepSearch({ ...options, fitness: () => assert.fail('every candidate goes through fitnessMany'), fitnessMany: (plans) => (generations++, evaluator.scoreMany(plans)) });
      assert.deepEqual(batched.layers, single.layers);
      assert.equal(batched.fitness, single.fitness);
      assert.deepEqual(batched.history, single.history);
      assert.equal(batched.evaluations, single.evaluations);
      assert.ok(generations < oneAtATime, `${generations} passes for ${oneAtATime} candidates`);
    } finally {
      await calibration.close();
    }
  });

  it('adaptive gating within a loss bound: per layer the smallest threshold whose loss stays within its share', async () => {
    const bound = 0.02;
    const { plan } = await generatePlanFile({
      model: checkpoint.folder, method: 'adaptiveGating', seed: 0, calibration: [{ file: calibrationFile }], output: path.join(dir, 'gating-bound.moeplan.json'), runtimes, threads: 1,
      parameters: { maxLossIncrease: bound },
    });
    assert.equal(plan.method.name, 'adaptiveGating');
    assert.equal(plan.method.parameters.maxLossIncrease, bound);
    assert.ok(plan.layers.every((layer) => layer.keptExperts.length === 8), 'every expert stays');
    // Checked independently: the calibration loss with one layer gated, against the full model's.
    const identity = await modelIdentity(checkpoint.folder);
    const calibration = await Calibration.load(await runtimes.get(identity, 1), identity, [{ file: calibrationFile }]);
    try {
      const evaluator = calibration.evaluator();
      const full = -(await evaluator.fitness({ layers: {} }));
      const lossAt = async (layer: number, threshold: number) => -(await evaluator.fitness({ layers: { [layer]: { adaptiveThreshold: threshold } } }));
      const share = bound / plan.layers.length;
      for (const layer of plan.layers) {
        if (layer.adaptiveThreshold === undefined) continue;
        assert.ok((await lossAt(layer.layer, layer.adaptiveThreshold)) <= full + share + 1e-9, `layer ${layer.layer} at T = ${layer.adaptiveThreshold}`);
        const smaller = layer.adaptiveThreshold - 0.025;
        if (smaller >= 0) assert.ok((await lossAt(layer.layer, smaller)) > full + share, `layer ${layer.layer}: T = ${smaller} was within the bound too`);
      }
      assert.ok(plan.layers.some((layer) => layer.adaptiveThreshold !== undefined && layer.adaptiveThreshold < 1), 'some layer gates at all');
    } finally {
      await calibration.close();
    }
    await assert.rejects(generatePlanFile({
      model: checkpoint.folder, method: 'adaptiveGating', seed: 0, calibration: [{ file: calibrationFile }], output: path.join(dir, 'gating-negative.moeplan.json'), runtimes, threads: 1,
      parameters: { maxLossIncrease: -1 },
    }), /maxLossIncrease.*0 or more/);
  });

  it('stops when aborted', async () => {
    const identity = await modelIdentity(checkpoint.folder);
    const calibration = await Calibration.load(await runtimes.get(identity, 1), identity, [{ file: calibrationFile }]);
    const abort = new AbortController();
    abort.abort();
    try {
      await assert.rejects(makePlan(calibration, { method: 'eep', targetExperts: 4, seed: 0, parameters: SMALL_EEP, signal: abort.signal }, { modelFolder: 'model', datasets: [] }));
    } finally {
      await calibration.close();
    }
  });

  it('adapts profile statistics to the methods\' inputs', () => {
    const [layer] = toPlanStatistics({
      gatingThresholds: [0.1, 0.2],
      layers: [{ layer: 3, tokenCounts: [1, 2], softCounts: [0.5, 1], reap: [0.1, 0.2], logitCosine: [[1, 0], [0, 1]], singleExpertShare: [0.6, 0.4] } as never],
    });
    assert.deepEqual(layer, { layer: 3, tokenCount: [1, 2], softCount: [0.5, 1], reapScore: [0.1, 0.2], routerLogitSimilarity: [[1, 0], [0, 1]], gatingCurve: { threshold: [0.1, 0.2], singleExpertShare: [0.6, 0.4] } });
  });

  it('writes paths relative to the workspace only when the plan is inside it too', () => {
    assert.equal(planRelativePath('/w/demo/model', '/w/plans/a.moeplan.json', '/w'), 'demo/model');
    // A plan outside the workspace: its readers look beside it and above it, not in the workspace.
    assert.equal(planRelativePath('/w/demo/model', '/tmp/a.moeplan.json', '/w'), '../w/demo/model');
    assert.equal(planRelativePath('/data/x.jsonl', '/w/plans/a.moeplan.json', '/w'), '../../data/x.jsonl');
    assert.equal(planRelativePath('/w/plans/m', '/w/plans/a.moeplan.json'), 'm');
  });

  it('previews kept, merged and dropped experts of a layer', () => {
    const preview = layerPreview({ layer: 1, keptExperts: [2, 4], mergeMatrix: [[0, 0, 0.7, 0.3, 0], [0, 0, 0, 0, 1]], routerMap: [[0, 0, 1, 0, 0], [0, 0, 0, 0, 1]] }, 5);
    assert.deepEqual(preview.kept, [2, 4]);
    assert.deepEqual(preview.mergedInto, { 2: [3] });
    assert.deepEqual(preview.dropped, [0, 1]);
  });
});
