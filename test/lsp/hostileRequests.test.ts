/**
 * Malformed and hostile `moeStudio/*` requests (issue #15): invalid params are answered
 * InvalidParams naming the field, a missing file is answered, and a dataset that hangs its reader
 * does not freeze the server.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { ErrorCodes as LspErrorCodes, ResponseError } from 'vscode-languageserver-protocol/node';
import { DetectTextFieldRequest, ErrorCodes, FindModelsRequest, ProfileDatasetRequest, REQUEST_PARAM_SCHEMAS, SummarizeDatasetRequest } from '../../common/protocol';
import { startServer, type ServerUnderTest } from '../support/lspClient';

describe('hostile requests to the language server', () => {
  let server: ServerUnderTest;
  let dir: string;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-lsp-hostile-'));
    server = await startServer();
  });

  after(async () => {
    await server.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const rejectsWith = (work: Promise<unknown>, code: number, pattern: RegExp) =>
    assert.rejects(work, (error: ResponseError<void>) => {
      assert.equal(error.code, code, error.message);
      assert.match(error.message, pattern);
      return true;
    });

  it('answers invalid params for every request with the field named', async () => {
    for (const method of Object.keys(REQUEST_PARAM_SCHEMAS)) {
      await rejectsWith(server.connection.sendRequest(method, null), LspErrorCodes.InvalidParams, new RegExp(`${method}: params should be an object, got null`));
    }
    await rejectsWith(server.connection.sendRequest(SummarizeDatasetRequest.method, { uri: 42 }), LspErrorCodes.InvalidParams, /params\.uri should be a string, got number 42/);
    await rejectsWith(server.connection.sendRequest(FindModelsRequest.method, { folders: ['a', {}] }), LspErrorCodes.InvalidParams, /params\.folders\[1\] should be a string/);
    await rejectsWith(
      server.connection.sendRequest(ProfileDatasetRequest.method, { uri: 'file:///x.jsonl', model: 'm', workspaceFolder: '/', field: { kind: 'pair', fields: ['a'] }, settings: {} }),
      LspErrorCodes.InvalidParams,
      /params\.field\.separator should be a string/,
    );
    await rejectsWith(
      server.connection.sendRequest(ProfileDatasetRequest.method, { uri: 'file:///x.jsonl', model: 'm', workspaceFolder: '/', field: { kind: 'constructor' }, settings: {} }),
      LspErrorCodes.InvalidParams,
      /params\.field\.kind should be one of "string", "field", "pair", "chat"/,
    );
  });

  it('answers detectTextField on a missing file', async () => {
    await rejectsWith(server.connection.sendRequest(DetectTextFieldRequest.type, { uri: pathToFileURL(path.join(dir, 'missing.jsonl')).toString() }), ErrorCodes.InvalidInput, /missing\.jsonl does not exist/);
  });

  it('refuses a FIFO named like a dataset and keeps answering', async () => {
    const fifo = path.join(dir, 'pipe.jsonl');
    execFileSync('mkfifo', [fifo]);
    await rejectsWith(server.connection.sendRequest(SummarizeDatasetRequest.type, { uri: pathToFileURL(fifo).toString() }), ErrorCodes.InvalidInput, /pipe\.jsonl does not exist or is not a file/);
    const good = path.join(dir, 'good.jsonl');
    fs.writeFileSync(good, '{"text":"a"}\n');
    const summary = await server.connection.sendRequest(SummarizeDatasetRequest.type, { uri: pathToFileURL(good).toString() });
    assert.equal(summary.rows, 1);
    assert.equal(server.process.exitCode, null);
  });
});
