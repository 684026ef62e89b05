/**
 * Fuzzing the language server's `moeStudio/*` requests with wrong parameter shapes, through the
 * bundled server over stdio: every request is answered with InvalidParams (naming a field) or a
 * user error, never an internal error or silence, and the server stays up.
 */
import fc from 'fast-check';
import assert from 'node:assert/strict';
import { ErrorCodes as LspErrorCodes, ResponseError } from 'vscode-languageserver-protocol';
import { ErrorCodes, REQUEST_PARAM_SCHEMAS } from '../../common/protocol';
import { startServer, type ServerUnderTest } from '../support/lspClient';
import { afterSurfaces, beforeSurfaces, fuzzSurface, hostileJson, utf8, INPUT_TIME_LIMIT_MS, surface } from './harness';

let server: ServerUnderTest;
beforeSurfaces(async () => {
  server = await startServer({ trusted: false });
});
afterSurfaces(() => server.stop());

const methods = Object.keys(REQUEST_PARAM_SCHEMAS);
const field = fc.constantFrom('uri', 'folder', 'folders', 'model', 'field', 'settings', 'plan', 'datasets', 'calibration', 'format', 'target', 'methods', 'counts', 'seed', 'output', 'a', 'b', 'workDoneToken', 'evaluation', 'metric');
/** JSON-RPC itself cannot send what JSON.stringify cannot write (20,000-deep values). */
const sendable = (limit: number) => hostileJson.filter((value) => {
  try {
    return (JSON.stringify(value)?.length ?? 0) < limit;
  } catch {
    return false;
  }
});
/** Params: anything at all, or an object with the right field names and wrong values. */
const params = fc.oneof(sendable(100_000), fc.dictionary(field, fc.oneof(sendable(10_000), fc.constantFrom('file:///nope', '/nope', 'http://x/y', 'file:///dev/zero'))));
/** The fixture stores method and params as one JSON document. */
const requests = fc.tuple(fc.constantFrom(...methods), params).map(([method, value]) => utf8(JSON.stringify({ method, params: value })));

const ANSWERED_CODES = new Set<number>([LspErrorCodes.InvalidParams, ErrorCodes.InvalidInput, ErrorCodes.Untrusted, ErrorCodes.Cancelled]);

surface('lsp', 'fuzz: LSP requests with wrong parameter shapes', async () => {
  await fuzzSurface('lsp', requests, async (bytes) => {
    const { method, params: value } = JSON.parse(new TextDecoder().decode(bytes)) as { method: string; params: unknown };
    let timer: NodeJS.Timeout | undefined;
    const answer = await Promise.race([
      server.connection.sendRequest(method, value).then(() => undefined, (error: unknown) => error),
      new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`${method} was not answered within ${INPUT_TIME_LIMIT_MS} ms`)), INPUT_TIME_LIMIT_MS))),
    ]).finally(() => clearTimeout(timer));
    if (answer === undefined) return;
    assert.ok(answer instanceof ResponseError, `${method}: not a ResponseError: ${String(answer)}`);
    assert.ok(ANSWERED_CODES.has(answer.code), `${method} answered ${answer.code}: ${answer.message.slice(0, 300)}`);
    if (answer.code === LspErrorCodes.InvalidParams) assert.match(answer.message, /params/);
  });
  assert.equal(server.process.exitCode, null, 'the server stayed up');
});
