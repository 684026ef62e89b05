/** The editor's path for a new family: a DeepSeek V3 FP8 checkpoint profiled over LSP, its dense layer skipped. */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { ProfileDatasetRequest, TokenRoutesRequest } from '../../common/protocol';
import { writeRandomCheckpoint } from '../support/randomCheckpoint';
import { sendInitialized, startServer, type ServerUnderTest } from '../support/lspClient';

describe('profiling DeepSeek V3 (FP8) over LSP', () => {
  let server: ServerUnderTest;
  let dir: string;
  let model: string;
  let datasetUri: string;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-lsp-deepseek-'));
    model = path.join(dir, 'v3');
    await writeRandomCheckpoint(model, { architecture: 'DeepseekV3ForCausalLM', dtype: 'BF16', seed: 3, vocabSize: 300, numLayers: 3, numExperts: 8, topK: 3, deepseek: { fp8: { blockSize: [128, 128], scaleDtype: 'F32' } } });
    const file = path.join(dir, 'data.jsonl');
    fs.writeFileSync(file, Array.from({ length: 12 }, (_, i) => JSON.stringify({ text: `row ${i}: ${'some words '.repeat(1 + (i % 4))}` })).join('\n') + '\n');
    datasetUri = pathToFileURL(file).toString();
    server = await startServer();
    sendInitialized(server);
  });

  after(async () => {
    await server.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('profiles the MoE layers only, with the experts the router selects', async () => {
    const result = await server.connection.sendRequest(ProfileDatasetRequest.type, {
      uri: datasetUri,
      model,
      field: { kind: 'field', field: 'text' },
      workspaceFolder: dir,
      settings: { sequenceLength: 128, maxRows: 100, tokenRecords: 1024, onMalformed: 'skip', threads: 1 },
    });
    assert.equal(result.profile.dataset.rows, 12);
    const routes = await server.connection.sendRequest(TokenRoutesRequest.type, { uri: datasetUri });
    assert.deepEqual(routes.layers, [1, 2]);
    assert.equal(routes.numExperts, 8);
    assert.ok(routes.routes.length > 20);
    for (const route of routes.routes) {
      assert.equal(route.experts.length, 2);
      for (const experts of route.experts) assert.equal(new Set(experts).size, 3);
      // V3's gate weights are renormalised sigmoid scores times routed_scaling_factor (2.5): they sum to 2.5.
      for (const gates of route.gates) assert.ok(Math.abs(gates.reduce((a, b) => a + b, 0) - 2.5) < 1e-3, `gates ${gates}`);
    }
  });
});
