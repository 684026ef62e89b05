import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import {
  DidOpenTextDocumentNotification,
  PublishDiagnosticsNotification,
  ResponseError,
  type PublishDiagnosticsParams,
} from 'vscode-languageserver-protocol/node';
import { DescribeModelRequest, ErrorCodes, HealthNotification, SummarizeDatasetRequest, type HealthParams } from '../../common/protocol';
import { writeRandomCheckpoint } from '../support/randomCheckpoint';
import { nextNotification, sendInitialized, startServer, type ServerUnderTest } from '../support/lspClient';

describe('language server over stdio', () => {
  let server: ServerUnderTest;
  let dir: string;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-lsp-'));
    server = await startServer();
  });

  after(async () => {
    await server.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('reports ready after initialized', async () => {
    const ready = nextNotification<HealthParams>(server, HealthNotification.type, (health) => health.state === 'ready');
    sendInitialized(server);
    assert.equal((await ready).state, 'ready');
  });

  it('answers a custom request with the dataset summary', async () => {
    const file = path.join(dir, 'rows.jsonl');
    fs.writeFileSync(file, '{"text":"a"}\n{"text":"bbbb"}\nnot json\n\n{"text":"cc"}\n');
    const summary = await server.connection.sendRequest(SummarizeDatasetRequest.type, { uri: pathToFileURL(file).toString() });
    assert.equal(summary.rows, 3);
    assert.equal(summary.malformedRows, 1);
    assert.deepEqual(summary.firstMalformedLines, [3]);
    assert.equal(summary.bytes, fs.statSync(file).size);
    assert.equal(summary.format, 'jsonl');
    assert.equal(summary.rowBytesHistogram.counts.reduce((a, b) => a + b, 0), 3);
  });

  it('turns bad input into a ResponseError and keeps serving', async () => {
    const missing = pathToFileURL(path.join(dir, 'missing.jsonl')).toString();
    await assert.rejects(
      server.connection.sendRequest(SummarizeDatasetRequest.type, { uri: missing }),
      (error: unknown) => error instanceof ResponseError && error.code === ErrorCodes.InvalidInput && /does not exist/.test(error.message),
    );
    const pickle = path.join(dir, 'weights.pt');
    fs.writeFileSync(pickle, 'not really');
    await assert.rejects(
      server.connection.sendRequest(SummarizeDatasetRequest.type, { uri: pathToFileURL(pickle).toString() }),
      (error: unknown) => error instanceof ResponseError && /pickle/.test(error.message),
    );
    const good = path.join(dir, 'ok.txt');
    fs.writeFileSync(good, 'one\ntwo\n');
    const summary = await server.connection.sendRequest(SummarizeDatasetRequest.type, { uri: pathToFileURL(good).toString() });
    assert.equal(summary.rows, 2);
  });

  it('publishes diagnostics for malformed JSONL lines', async () => {
    const uri = pathToFileURL(path.join(dir, 'open.jsonl')).toString();
    const published = nextNotification<PublishDiagnosticsParams>(server, PublishDiagnosticsNotification.type, (params) => params.uri === uri);
    void server.connection.sendNotification(DidOpenTextDocumentNotification.type, {
      textDocument: { uri, languageId: 'jsonl', version: 1, text: '{"ok":1}\n{"broken": \n{"ok":2}\n' },
    });
    const { diagnostics } = await published;
    assert.equal(diagnostics.length, 1);
    assert.equal(diagnostics[0].range.start.line, 1);
    assert.match(String(diagnostics[0].message), /not valid JSON/);
  });

  it('describes a model folder and reports a corrupt checkpoint as input error, staying up', async () => {
    const folder = path.join(dir, 'qwen');
    await writeRandomCheckpoint(folder, { architecture: 'Qwen2MoeForCausalLM', numLayers: 2, numExperts: 4, topK: 2, dtype: 'BF16' });
    const summary = await server.connection.sendRequest(DescribeModelRequest.type, { folder });
    assert.equal(summary.architecture, 'Qwen2MoeForCausalLM');
    assert.equal(summary.numExperts, 4);
    assert.deepEqual(Object.keys(summary.dtypes), ['BF16']);

    const weights = path.join(folder, 'model.safetensors');
    fs.truncateSync(weights, fs.statSync(weights).size - 7);
    await assert.rejects(
      server.connection.sendRequest(DescribeModelRequest.type, { folder }),
      (error: unknown) => error instanceof ResponseError && error.code === ErrorCodes.InvalidInput && /model\.safetensors/.test(error.message),
    );
    const again = await server.connection.sendRequest(SummarizeDatasetRequest.type, { uri: pathToFileURL(path.join(dir, 'rows.jsonl')).toString() });
    assert.equal(again.rows, 3);
  });

  it('describes GPT-OSS in MXFP4 and Phi-MoE with their routing, and names what a GPT-OSS checkpoint short of a layer lacks', async () => {
    const gptOss = path.join(dir, 'gpt-oss');
    await writeRandomCheckpoint(gptOss, { architecture: 'GptOssForCausalLM', numLayers: 2, numExperts: 8, topK: 4, dtype: 'BF16' });
    const summary = await server.connection.sendRequest(DescribeModelRequest.type, { folder: gptOss });
    assert.equal(summary.architecture, 'GptOssForCausalLM');
    assert.equal(summary.routing, 'top-4 of 8 router logits (with bias), softmax over those 4');
    assert.deepEqual(Object.keys(summary.dtypes).sort(), ['BF16', 'U8']);
    const phimoe = path.join(dir, 'phimoe');
    await writeRandomCheckpoint(phimoe, { architecture: 'PhimoeForCausalLM', numLayers: 2, numExperts: 4 });
    assert.match((await server.connection.sendRequest(DescribeModelRequest.type, { folder: phimoe })).routing, /^sparsemixer over 4 experts/);

    // The config asks for a third layer the weights do not have: an input error naming its tensors.
    const config = JSON.parse(fs.readFileSync(path.join(gptOss, 'config.json'), 'utf8'));
    fs.writeFileSync(path.join(gptOss, 'config.json'), JSON.stringify({ ...config, num_hidden_layers: 3, layer_types: [...config.layer_types, 'sliding_attention'] }));
    await assert.rejects(
      server.connection.sendRequest(DescribeModelRequest.type, { folder: gptOss }),
      (error: unknown) => error instanceof ResponseError && error.code === ErrorCodes.InvalidInput && /missing tensor model\.layers\.2\.[a-z_.]+/.test(error.message),
    );
  });
});
