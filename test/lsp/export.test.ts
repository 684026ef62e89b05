/** Export over the real bundled server: preview, export with progress, an existing target, ONNX, restricted mode. */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import { ResponseError } from 'vscode-languageserver-protocol/node';
import { ErrorCodes, ExportPlanRequest, ExportPreviewRequest, TrustNotification } from '../../common/protocol';
import { loadCheckpoint } from '../../server/src/checkpoint';
import { formatPlan, type MoePlan } from '../../server/src/plan';
import { writeRandomCheckpoint } from '../support/randomCheckpoint';
import { sendInitialized, startServer, type ServerUnderTest } from '../support/lspClient';

describe('export over the language server', () => {
  let server: ServerUnderTest;
  let dir: string;
  let planFile: string;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-lsp-export-'));
    await writeRandomCheckpoint(path.join(dir, 'model'), { architecture: 'MixtralForCausalLM', seed: 4, numLayers: 2, vocabSize: 300 });
    const plan: MoePlan = {
      schema: 'moe-studio.plan',
      version: 1,
      model: { folder: 'model', architecture: 'MixtralForCausalLM', numExperts: 8, numLayers: 2, topK: 2 },
      calibration: { datasets: ['calibration.jsonl'] },
      method: { name: 'frequency', parameters: { targetExperts: 4 }, seed: 0 },
      uniformExpertCount: true,
      exactInHuggingFace: { exact: true, reasons: [] },
      layers: [
        { layer: 0, keptExperts: [0, 2, 5, 7] },
        { layer: 1, keptExperts: [1, 3, 4, 6] },
      ],
      evaluations: [],
    };
    planFile = path.join(dir, 'small.moeplan.json');
    fs.writeFileSync(planFile, formatPlan(plan));
    server = await startServer();
    sendInitialized(server);
  });

  after(async () => {
    await server.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('previews the export: tensors removed and kept, bytes saved, config before and after', async () => {
    const preview = await server.connection.sendRequest(ExportPreviewRequest.type, { plan: planFile });
    assert.ok(preview.tensors.some((tensor) => tensor.action === 'removed'));
    assert.ok(preview.tensors.some((tensor) => tensor.action === 'kept'));
    assert.ok(preview.tensors.some((tensor) => tensor.action === 'sliced'), 'router rows are sliced');
    assert.equal(preview.bytesSaved, preview.bytesBefore - preview.bytesAfter);
    assert.ok(preview.bytesSaved > 0);
    assert.match(preview.configBefore, /"num_local_experts": 8/);
    assert.match(preview.configAfter, /"num_local_experts": 4/);
    assert.deepEqual(preview.notExactReasons, []);
  });

  it('exports to Hugging Face with work-done progress, and the export loads with 4 experts', async () => {
    const progress: { kind: string; percentage?: number; message?: string }[] = [];
    const subscription = server.connection.onNotification('$/progress', ({ token, value }: { token: string; value: { kind: string; percentage?: number; message?: string } }) => {
      if (token === 'export-hf') progress.push(value);
    });
    const target = path.join(dir, 'exported');
    const result = await server.connection.sendRequest(ExportPlanRequest.type, { plan: planFile, format: 'huggingface', target, workDoneToken: 'export-hf' });
    subscription.dispose();
    assert.equal(result.target, target);
    assert.ok(result.files.some((file) => file.path === 'model.safetensors' && file.sha256.length === 64));
    assert.match(result.modelCard!, /frequency pruning/);
    assert.equal(progress[0].kind, 'begin');
    assert.equal(progress.at(-1)!.kind, 'end');
    assert.ok(progress.some((value) => value.kind === 'report' && /^\d+(\.\d)? [kMG]B of .* · \d+(\.\d)? [kMG]B\/s$/.test(value.message ?? '')), JSON.stringify(progress));
    const reloaded = await loadCheckpoint(target);
    await reloaded.weights.close();
    assert.equal(reloaded.config.num_local_experts, 4);
    assert.ok(reloaded.spec.layers.every((layer) => layer.kind === 'moe' && layer.moe.numExperts === 4));
  });

  it('answers ExportTargetExists for an existing target, and replaces it with overwrite', async () => {
    const target = path.join(dir, 'exported');
    await assert.rejects(
      server.connection.sendRequest(ExportPlanRequest.type, { plan: planFile, format: 'huggingface', target }),
      (error: unknown) => error instanceof ResponseError && error.code === ErrorCodes.ExportTargetExists && /already exists/.test(error.message),
    );
    const result = await server.connection.sendRequest(ExportPlanRequest.type, { plan: planFile, format: 'huggingface', target, overwrite: true });
    assert.equal(result.target, target);
  });

  it('exports one ONNX file that onnxruntime loads', async () => {
    const target = path.join(dir, 'small.onnx');
    const result = await server.connection.sendRequest(ExportPlanRequest.type, { plan: planFile, format: 'onnx', target });
    assert.deepEqual(result.files.map((file) => file.path), ['small.onnx']);
    assert.equal(result.modelCard, undefined);
    const session = await ort.InferenceSession.create(target);
    try {
      assert.deepEqual(session.inputNames, ['input_ids', 'attention_mask']);
      assert.deepEqual(session.outputNames, ['logits']);
    } finally {
      await session.release();
    }
  });

  it('reports an invalid plan as InvalidInput and refuses to export in restricted mode', async () => {
    await assert.rejects(
      server.connection.sendRequest(ExportPlanRequest.type, { plan: path.join(dir, 'missing.moeplan.json'), format: 'onnx', target: path.join(dir, 'x.onnx') }),
      (error: unknown) => error instanceof ResponseError && error.code === ErrorCodes.InvalidInput && /Cannot read the plan/.test(error.message),
    );
    await server.connection.sendNotification(TrustNotification.type, { trusted: false });
    await assert.rejects(
      server.connection.sendRequest(ExportPlanRequest.type, { plan: planFile, format: 'onnx', target: path.join(dir, 'untrusted.onnx') }),
      (error: unknown) => error instanceof ResponseError && error.code === ErrorCodes.Untrusted,
    );
    assert.equal(fs.existsSync(path.join(dir, 'untrusted.onnx')), false);
    await server.connection.sendNotification(TrustNotification.type, { trusted: true });
  });
});
