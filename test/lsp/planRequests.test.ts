import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CancellationTokenSource, ResponseError } from 'vscode-languageserver-protocol/node';
import { ErrorCodes, EvaluatePlanRequest, GeneratePlanRequest, PreviewPlanRequest, SweepRequest } from '../../common/protocol';
import { formatPlan, parsePlan, predictSavings } from '../../server/src/plan';
import { sendInitialized, startServer, type ServerUnderTest } from '../support/lspClient';
import { writeRandomCheckpoint, type RandomCheckpoint } from '../support/randomCheckpoint';

describe('plan requests in the language server', () => {
  let server: ServerUnderTest;
  let dir: string;
  let checkpoint: RandomCheckpoint;
  let calibration: string;
  let heldOut: string;
  let planPath: string;
  const progress: { token: string | number; value: { kind: string; message?: string } }[] = [];

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-plan-requests-'));
    checkpoint = await writeRandomCheckpoint(path.join(dir, 'model'), { architecture: 'MixtralForCausalLM', numLayers: 2, numExperts: 8, topK: 2, seed: 11 });
    calibration = path.join(dir, 'calibration.jsonl');
    heldOut = path.join(dir, 'held-out.jsonl');
    const rows = (prefix: string) => Array.from({ length: 10 }, (_, i) => JSON.stringify({ text: `${prefix} ${i}: ${'the cat sat on the mat '.repeat(1 + (i % 4))}` })).join('\n') + '\n';
    fs.writeFileSync(calibration, rows('calibration'));
    fs.writeFileSync(heldOut, rows('held out'));
    server = await startServer();
    server.connection.onNotification('$/progress', (params: unknown) => {
      progress.push(params as (typeof progress)[number]);
    });
    sendInitialized(server);
    planPath = path.join(dir, 'frequency.moeplan.json');
    const generated = await server.connection.sendRequest(GeneratePlanRequest.type, {
      model: checkpoint.folder, method: 'frequency', targetExperts: 4, calibration: [{ file: calibration, field: { kind: 'field', field: 'text' } }], seed: 0, output: planPath, workDoneToken: 'generate-1',
    });
    assert.equal(generated.planPath, planPath);
  });

  after(async () => {
    await server?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('generates a plan file with progress on the work-done token', () => {
    assert.ok(parsePlan(fs.readFileSync(planPath, 'utf8'), checkpoint.spec).valid);
    const kinds = progress.filter((p) => p.token === 'generate-1').map((p) => p.value.kind);
    assert.equal(kinds[0], 'begin');
    assert.equal(kinds[kinds.length - 1], 'end');
  });

  it('evaluates a plan: baseline and value per metric, and the plan text with them', async () => {
    const result = await server.connection.sendRequest(EvaluatePlanRequest.type, { plan: planPath, datasets: [{ file: heldOut }], workDoneToken: 'evaluate-1' });
    const metrics = result.evaluations.map((e) => e.metric);
    assert.deepEqual(metrics, ['loss', 'perplexity', 'kl', 'top1Agreement']);
    for (const evaluation of result.evaluations) {
      assert.ok(Number.isFinite(evaluation.value) && Number.isFinite(evaluation.baseline!), JSON.stringify(evaluation));
      assert.equal(evaluation.dataset, 'held-out.jsonl');
    }
    const loss = result.evaluations.find((e) => e.metric === 'loss')!;
    assert.ok(loss.value >= loss.baseline! - 1e-6 || loss.value > 0);
    assert.equal(result.evaluations.find((e) => e.metric === 'kl')!.baseline, 0);
    const parsed = parsePlan(result.updatedPlanText, checkpoint.spec);
    assert.ok(parsed.valid, JSON.stringify(parsed.problems));
    assert.deepEqual(parsed.plan!.evaluations, result.evaluations);
    assert.ok(progress.some((p) => p.token === 'evaluate-1' && p.value.kind === 'begin'));
  });

  it('previews a plan: per-layer experts and the config before and after', async () => {
    const preview = await server.connection.sendRequest(PreviewPlanRequest.type, { plan: planPath });
    assert.equal(preview.layers.length, 2);
    for (const layer of preview.layers) {
      assert.equal(layer.kept.length, 4);
      assert.equal(layer.dropped.length, 4);
      assert.equal(layer.numExperts, 8);
    }
    assert.match(preview.configBefore, /"num_local_experts": 8/);
    assert.match(preview.configAfter, /"num_local_experts": 4/);
    assert.deepEqual(preview.notExactReasons, []);
  });

  it('previews the editor\'s unsaved text, with savings and exactness as its layers are now and the files resolved', async () => {
    const onDisk = fs.readFileSync(planPath, 'utf8');
    const plan = parsePlan(onDisk).plan!;
    // One expert removed from layer 0; the recorded savings and exactness are the old plan's.
    const layers = [{ ...plan.layers[0], keptExperts: plan.layers[0].keptExperts.slice(0, 3) }, plan.layers[1]];
    const text = formatPlan({ ...plan, layers });
    const preview = await server.connection.sendRequest(PreviewPlanRequest.type, { plan: planPath, text });
    assert.equal(fs.readFileSync(planPath, 'utf8'), onDisk);
    assert.deepEqual(preview.layers.map((layer) => layer.kept.length), [3, 4]);
    assert.deepEqual(preview.plan.predictedSavings, predictSavings(checkpoint.spec, layers, plan.predictedSavings!.dtype as 'F32'));
    assert.notDeepEqual(preview.plan.predictedSavings, plan.predictedSavings);
    // Exact through the per-layer-count extension, with the stock loaders' limit said as it is now.
    assert.equal(preview.plan.exactInHuggingFace.exact, true);
    assert.match(String(preview.plan.exactInHuggingFace.stockLoaders), /different expert counts/);
    assert.equal(preview.modelFolder, checkpoint.folder);
    assert.deepEqual(preview.calibrationFiles, [calibration]);
  });

  it('refuses a plan made for another model, saying why', async () => {
    const plan = parsePlan(fs.readFileSync(planPath, 'utf8')).plan!;
    const other = path.join(dir, 'other.moeplan.json');
    fs.writeFileSync(other, formatPlan({ ...plan, model: { ...plan.model, fingerprint: 'not-this-model' } }));
    await assert.rejects(server.connection.sendRequest(EvaluatePlanRequest.type, { plan: other, datasets: [{ file: heldOut }] }), (error: ResponseError<void>) => {
      assert.equal(error.code, ErrorCodes.InvalidInput);
      assert.match(error.message, /made for another model/);
      return true;
    });
    const shape = path.join(dir, 'shape.moeplan.json');
    fs.writeFileSync(shape, formatPlan({ ...plan, model: { ...plan.model, numExperts: 16 } }));
    await assert.rejects(server.connection.sendRequest(PreviewPlanRequest.type, { plan: shape }), (error: ResponseError<void>) => {
      assert.equal(error.code, ErrorCodes.InvalidInput);
      assert.match(error.message, /16 experts/);
      return true;
    });
  });

  it('reports a missing dataset clearly', async () => {
    await assert.rejects(server.connection.sendRequest(EvaluatePlanRequest.type, { plan: planPath, datasets: [{ file: path.join(dir, 'nope.jsonl') }] }), (error: ResponseError<void>) => {
      assert.equal(error.code, ErrorCodes.InvalidInput);
      assert.match(error.message, /nope\.jsonl does not exist/);
      return true;
    });
  });

  it('sweeps methods over expert counts', async () => {
    const result = await server.connection.sendRequest(SweepRequest.type, {
      model: checkpoint.folder, methods: ['random', 'frequency'], counts: [8, 4, 2], calibration: [{ file: calibration, field: { kind: 'field', field: 'text' } }], evaluation: { file: heldOut }, metric: 'loss', seed: 0, workDoneToken: 'sweep-1',
    });
    assert.deepEqual(result.counts, [8, 4, 2]);
    // Progress says where the whole sweep is: which plan of which method, and an overall percentage that only grows.
    const reports = progress.filter((p) => p.token === 'sweep-1' && p.value.kind === 'report').map((p) => p.value as { message?: string; percentage?: number });
    const messages = reports.map((r) => r.message ?? '');
    for (const expected of ['Sweep 1/3 of random (1/2 methods): planning 4 experts', 'Sweep 2/3 of random (1/2 methods): planning 2 experts', 'Sweep 1/3 of frequency (2/2 methods): planning 4 experts']) {
      assert.ok(messages.some((m) => m.startsWith(expected)), `no "${expected}" in ${JSON.stringify(messages)}`);
    }
    const percentages = reports.map((r) => r.percentage).filter((v): v is number => v !== undefined);
    assert.ok(percentages.length >= 4 && percentages.every((v, i) => i === 0 || v >= percentages[i - 1]) && percentages.at(-1)! <= 100, JSON.stringify(percentages));
    assert.deepEqual(result.series.map((s) => s.method), ['random', 'frequency']);
    for (const series of result.series) {
      assert.equal(series.values[0], result.baseline);
      assert.ok(series.values.every(Number.isFinite));
    }
  });

  it('cancels a running request', async () => {
    const source = new CancellationTokenSource();
    const began = new Promise<void>((resolve) => {
      const subscription = server.connection.onNotification('$/progress', (value: unknown) => {
        const params = value as (typeof progress)[number];
        if (params.token === 'cancel-me' && params.value.message?.startsWith('EEP')) {
          subscription.dispose();
          resolve();
        }
      });
    });
    const request = server.connection.sendRequest(GeneratePlanRequest.type, {
      model: checkpoint.folder, method: 'eep', targetExperts: 4, calibration: [{ file: calibration, field: { kind: 'field', field: 'text' } }], seed: 0, output: path.join(dir, 'cancelled.moeplan.json'),
      parameters: { budget: 100000, generations: 10000, populationSize: 8 }, workDoneToken: 'cancel-me',
    }, source.token);
    await began;
    source.cancel();
    await assert.rejects(request, (error: ResponseError<void>) => {
      assert.equal(error.code, ErrorCodes.Cancelled);
      return true;
    });
    assert.ok(!fs.existsSync(path.join(dir, 'cancelled.moeplan.json')));
  });

  it('runs no model in an untrusted workspace', async () => {
    const untrusted = await startServer({ trusted: false });
    try {
      sendInitialized(untrusted);
      await assert.rejects(untrusted.connection.sendRequest(EvaluatePlanRequest.type, { plan: planPath, datasets: [{ file: heldOut }] }), (error: ResponseError<void>) => {
        assert.equal(error.code, ErrorCodes.Untrusted);
        return true;
      });
    } finally {
      await untrusted.stop();
    }
  });
});
