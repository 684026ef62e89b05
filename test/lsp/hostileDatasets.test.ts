/**
 * A dataset that kills its reader, through the stages that read datasets for the language server:
 * profiling and evaluation answer with an error naming the file, other requests are answered
 * meanwhile, and the server stays up (issue #15). The file is a 1.3 KB Parquet whose RLE runs make
 * V8 abort the process that decodes it; only the reader process dies.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import type { ResponseError } from 'vscode-languageserver-protocol/node';
import { ErrorCodes, EvaluatePlanRequest, GeneratePlanRequest, ProfileDatasetRequest, SummarizeDatasetRequest } from '../../common/protocol';
import { sendInitialized, startServer, type ServerUnderTest } from '../support/lspClient';
import { parquetWithRunawayRle } from '../support/parquetFile';
import { writeRandomCheckpoint, type RandomCheckpoint } from '../support/randomCheckpoint';

describe('datasets that kill their reader, over LSP', () => {
  let server: ServerUnderTest;
  let dir: string;
  let checkpoint: RandomCheckpoint;
  let good: string;
  let hostile: string;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-lsp-hostile-data-'));
    checkpoint = await writeRandomCheckpoint(path.join(dir, 'model'), { architecture: 'MixtralForCausalLM', numLayers: 2, numExperts: 4, topK: 2, seed: 5, vocabSize: 300, hiddenSize: 32, numHeads: 4, numKvHeads: 2, expertIntermediateSize: 16 });
    good = path.join(dir, 'good.jsonl');
    fs.writeFileSync(good, Array.from({ length: 8 }, (_, i) => JSON.stringify({ text: `row ${i}: the cat sat on the mat` })).join('\n') + '\n');
    hostile = path.join(dir, 'runaway.parquet');
    fs.writeFileSync(hostile, parquetWithRunawayRle());
    server = await startServer();
    sendInitialized(server);
  });

  after(async () => {
    await server?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** The hostile request fails with its error while a request about a good file is answered first. */
  async function failsWhileServing(hostileRequest: Promise<unknown>): Promise<void> {
    const order: string[] = [];
    const failed = hostileRequest.then(
      () => assert.fail('the hostile dataset was read'),
      (error: ResponseError<void>) => {
        order.push('hostile');
        assert.equal(error.code, ErrorCodes.InvalidInput, error.message);
        assert.match(error.message, /runaway\.parquet could not be read: the reader stopped \(signal \w+/);
        assert.ok(!/\n\s+at /.test(error.message), error.message);
      },
    );
    // Give the reader time to start decoding, then ask about another file.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const summary = await server.connection.sendRequest(SummarizeDatasetRequest.type, { uri: pathToFileURL(good).toString() });
    order.push('good');
    assert.equal(summary.rows, 8);
    await failed;
    assert.deepEqual(order, ['good', 'hostile'], 'the server answered while the reader was stuck');
    assert.equal(server.process.exitCode, null);
  }

  it('profiling answers with the error and the server keeps serving', async () => {
    await failsWhileServing(
      server.connection.sendRequest(ProfileDatasetRequest.type, {
        uri: pathToFileURL(hostile).toString(), model: checkpoint.folder, field: { kind: 'field', field: 'text' }, workspaceFolder: dir,
        settings: { sequenceLength: 64, maxRows: 100, tokenRecords: 16, onMalformed: 'skip', threads: 1 },
      }),
    );
  });

  it('evaluation answers with the error and the server keeps serving', async () => {
    const plan = path.join(dir, 'plan.moeplan.json');
    await server.connection.sendRequest(GeneratePlanRequest.type, { model: checkpoint.folder, method: 'frequency', targetExperts: 2, calibration: [{ file: good, field: { kind: 'field', field: 'text' } }], seed: 0, output: plan });
    await failsWhileServing(server.connection.sendRequest(EvaluatePlanRequest.type, { plan, datasets: [{ file: hostile, field: { kind: 'field', field: 'text' } }] }));
  });
});
