import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import {
  CancellationTokenSource,
  DidOpenTextDocumentNotification,
  HoverRequest,
  ResponseError,
  WorkDoneProgress,
  type MarkupContent,
  type WorkDoneProgressBegin,
  type WorkDoneProgressEnd,
  type WorkDoneProgressReport,
} from 'vscode-languageserver-protocol/node';
import { ErrorCodes, ProfileDatasetRequest, TokenRoutesRequest, type ProfileDatasetParams } from '../../common/protocol';
import { writeRandomCheckpoint } from '../support/randomCheckpoint';
import { sendInitialized, startServer, type ServerUnderTest } from '../support/lspClient';

type Progress = WorkDoneProgressBegin | WorkDoneProgressReport | WorkDoneProgressEnd;

describe('profiling over LSP', () => {
  let server: ServerUnderTest;
  let dir: string;
  let model: string;
  let datasetUri: string;
  let datasetText: string;

  const params = (uri: string, extra: Partial<ProfileDatasetParams> = {}): ProfileDatasetParams => ({
    uri,
    model,
    field: { kind: 'field', field: 'text' },
    workspaceFolder: dir,
    settings: { sequenceLength: 256, maxRows: 2000, tokenRecords: 4096, onMalformed: 'skip', threads: 1 },
    ...extra,
  });

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-lsp-profile-'));
    model = path.join(dir, 'tiny');
    await writeRandomCheckpoint(model, { architecture: 'MixtralForCausalLM', seed: 3, vocabSize: 300, hiddenSize: 32, numLayers: 2, numHeads: 4, numKvHeads: 2, numExperts: 4, topK: 2, expertIntermediateSize: 16 });
    const rows = Array.from({ length: 30 }, (_, i) => JSON.stringify({ id: i, text: `row ${i}: "quoted"\nnew line, café ${'tokens '.repeat(i % 5)}` }));
    datasetText = rows.join('\n') + '\n';
    const file = path.join(dir, 'data.jsonl');
    fs.writeFileSync(file, datasetText);
    datasetUri = pathToFileURL(file).toString();
    server = await startServer();
    sendInitialized(server);
  });

  after(async () => {
    await server.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('profiles a dataset and reports progress on the client token', async () => {
    const progress: Progress[] = [];
    const subscription = server.connection.onProgress(WorkDoneProgress.type, 'profile-1', (value) => {
      progress.push(value);
    });
    const result = await server.connection.sendRequest(ProfileDatasetRequest.type, params(datasetUri, { workDoneToken: 'profile-1' }));
    subscription.dispose();
    assert.equal(result.reused, false);
    assert.equal(result.profile.dataset.rows, 30);
    assert.ok(fs.existsSync(result.profilePath));
    assert.equal(progress[0].kind, 'begin');
    assert.equal((progress[0] as WorkDoneProgressBegin).cancellable, true);
    const reports = progress.filter((value): value is WorkDoneProgressReport => value.kind === 'report');
    // First the estimate from the warm-up, then tokens as they are profiled.
    assert.match(reports[0]?.message ?? '', /^Profiling: estimated \d+ s, peak memory about \d+ MB$/);
    assert.match(reports[1]?.message ?? '', /^[\d,]+ tokens · [\d,]+ tok\/s · \d+ s left$/);
    assert.equal(progress[progress.length - 1].kind, 'end');
    const again = await server.connection.sendRequest(ProfileDatasetRequest.type, params(datasetUri));
    assert.equal(again.reused, true);
  });

  it('maps token routes into the document through JSON escapes', async () => {
    const routes = await server.connection.sendRequest(TokenRoutesRequest.type, { uri: datasetUri });
    assert.deepEqual(routes.layers, [0, 1]);
    assert.equal(routes.numExperts, 4);
    assert.ok(routes.routes.length > 100);
    const lines = datasetText.split('\n');
    // The tokens of row 0 (line 0), put together from their raw columns, spell the raw JSON string.
    const line0 = routes.routes.filter((route) => route.range.start.line === 0);
    const raw = line0.map((route) => lines[0].slice(route.range.start.character, route.range.end.character)).join('');
    const value = lines[0].slice(lines[0].indexOf('"text":"') + 8, lines[0].lastIndexOf('"'));
    assert.equal(raw, value);
    assert.ok(raw.includes('\\"quoted\\"\\n'));
    for (const route of routes.routes) assert.equal(route.experts.length, 2);
  });

  it('hovers a token with its experts per layer, and the rest of a line with the row summary', async () => {
    void server.connection.sendNotification(DidOpenTextDocumentNotification.type, { textDocument: { uri: datasetUri, languageId: 'jsonl', version: 1, text: datasetText } });
    const routes = await server.connection.sendRequest(TokenRoutesRequest.type, { uri: datasetUri });
    const target = routes.routes.find((route) => route.range.start.line === 2 && route.range.end.character > route.range.start.character + 1)!;
    const hover = await server.connection.sendRequest(HoverRequest.type, { textDocument: { uri: datasetUri }, position: target.range.start });
    const markdown = (hover?.contents as MarkupContent).value;
    assert.match(markdown, /\*\*Token\*\*/);
    assert.match(markdown, /\| layer \| experts \(gate\) \|/);
    assert.match(markdown, new RegExp(`\\| 0 \\| \\*\\*${target.experts[0][0]}\\*\\* \\(${target.gates[0][0].toFixed(2)}\\)`));
    assert.deepEqual(hover?.range, target.range);
    const summary = await server.connection.sendRequest(HoverRequest.type, { textDocument: { uri: datasetUri }, position: { line: 2, character: 1 } });
    assert.match((summary?.contents as MarkupContent).value, /\*\*Row 3\*\* · \d+ recorded tokens/);
  });

  it('refuses to profile in an untrusted workspace', async () => {
    const untrusted = await startServer({ trusted: false });
    try {
      sendInitialized(untrusted);
      await assert.rejects(
        untrusted.connection.sendRequest(ProfileDatasetRequest.type, params(datasetUri, { force: true })),
        (error: unknown) => error instanceof ResponseError && error.code === ErrorCodes.Untrusted && /not trusted/.test(error.message),
      );
    } finally {
      await untrusted.stop();
    }
  });

  it('cancels a running profile: RequestCancelled, and no profile written', async () => {
    const file = path.join(dir, 'large.jsonl');
    fs.writeFileSync(file, Array.from({ length: 2000 }, (_, i) => JSON.stringify({ text: `long row ${i} ${'with many tokens '.repeat(8)}` })).join('\n'));
    const uri = pathToFileURL(file).toString();
    const source = new CancellationTokenSource();
    const subscription = server.connection.onProgress(WorkDoneProgress.type, 'profile-2', (value) => {
      if (value.kind === 'report') source.cancel();
    });
    await assert.rejects(
      server.connection.sendRequest(ProfileDatasetRequest.type, params(uri, { workDoneToken: 'profile-2' }), source.token),
      (error: unknown) => error instanceof ResponseError && error.code === ErrorCodes.Cancelled,
    );
    subscription.dispose();
    assert.equal(fs.existsSync(path.join(dir, '.moe-studio', 'profiles', 'large.jsonl.tiny.json')), false);
  });
});
