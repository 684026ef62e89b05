// Which models a workspace offers (issue 17: after an export into the workspace's plan folder every
// profile asked "which model?"): exports under .moe-studio/exports/, the extension's suggested
// target, are not workspace models; a checkpoint the user put elsewhere in the workspace is.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FindModelsRequest } from '../../common/protocol';
import { sendInitialized, startServer, type ServerUnderTest } from '../support/lspClient';
import { writeRandomCheckpoint } from '../support/randomCheckpoint';

describe('model search in the workspace', () => {
  let server: ServerUnderTest;
  let workspace: string;

  before(async () => {
    workspace = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-find-models-'));
    const model = await writeRandomCheckpoint(path.join(workspace, 'model'), { architecture: 'MixtralForCausalLM', numLayers: 1, numExperts: 4, topK: 2, seed: 3 });
    for (const copy of ['.moe-studio/exports/code.frequency-keep2-model', 'plans/exported-by-hand']) fs.cpSync(model.folder, path.join(workspace, copy), { recursive: true });
    server = await startServer();
    sendInitialized(server);
  });

  after(async () => {
    await server?.stop();
    fs.rmSync(workspace, { recursive: true, force: true });
  });

  it('finds the model and a checkpoint put in plans/, not an export under .moe-studio/exports/', async () => {
    const found = await server.connection.sendRequest(FindModelsRequest.type, { folders: [workspace] });
    assert.deepEqual(found.map((candidate) => path.relative(workspace, candidate.folder)), ['model', path.join('plans', 'exported-by-hand')]);
    assert.ok(found.every((candidate) => candidate.architecture === 'MixtralForCausalLM'));
  });
});
