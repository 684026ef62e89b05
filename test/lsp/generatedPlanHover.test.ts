// A plan generated in a workspace whose calibration file was never profiled: the server profiles it
// first, the plan names that profile, and the plan's expert hovers show each expert's statistics
// (issue 17: "Expert hovers show no statistics on generated plans"). The shares are checked against
// the saved profile's own token counts. The plan, in plans/, writes workspace-relative paths: its preview
// resolves them from the workspace (not the plan's folder), so "Run sweep" and Evaluate on it find the model
// (the server's working directory is not the workspace here, as in a multi-root window).

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { DidOpenTextDocumentNotification, HoverRequest, type MarkupContent } from 'vscode-languageserver-protocol/node';
import { TextDocument } from 'vscode-languageserver-textdocument';
import { EvaluatePlanRequest, GeneratePlanRequest, PreviewPlanRequest, SweepRequest } from '../../common/protocol';
import type { ProfileFile } from '../../server/src/profile/types';
import { sendInitialized, startServer, type ServerUnderTest } from '../support/lspClient';
import { writeRandomCheckpoint, type RandomCheckpoint } from '../support/randomCheckpoint';

describe('hovers on a generated plan', () => {
  let server: ServerUnderTest;
  let workspace: string;
  let checkpoint: RandomCheckpoint;
  let planPath: string;

  before(async () => {
    workspace = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-generated-hover-'));
    checkpoint = await writeRandomCheckpoint(path.join(workspace, 'model'), { architecture: 'MixtralForCausalLM', numLayers: 2, numExperts: 8, topK: 2, seed: 21 });
    const rows = Array.from({ length: 10 }, (_, i) => JSON.stringify({ text: `row ${i}: ${'the cat sat on the mat '.repeat(1 + (i % 4))}` }));
    fs.mkdirSync(path.join(workspace, 'data'));
    fs.writeFileSync(path.join(workspace, 'data', 'calibration.jsonl'), rows.join('\n') + '\n');
    server = await startServer({ trusted: true }, [workspace]);
    sendInitialized(server);
    planPath = path.join(workspace, 'plans', 'frequency.moeplan.json');
    await server.connection.sendRequest(GeneratePlanRequest.type, {
      model: checkpoint.folder, method: 'frequency', targetExperts: 4, calibration: [{ file: path.join(workspace, 'data', 'calibration.jsonl'), field: { kind: 'field', field: 'text' } }], seed: 0, output: planPath,
    });
  });

  after(async () => {
    await server?.stop();
    fs.rmSync(workspace, { recursive: true, force: true });
  });

  it('resolves the workspace-relative model and data of a plan in plans/, and sweeps with them', async () => {
    const plan = JSON.parse(fs.readFileSync(planPath, 'utf8')) as { model: { folder: string }; calibration: { datasets: string[] } };
    assert.equal(plan.model.folder, 'model');
    assert.deepEqual(plan.calibration.datasets, ['data/calibration.jsonl']);
    const preview = await server.connection.sendRequest(PreviewPlanRequest.type, { plan: planPath });
    assert.equal(preview.modelFolder, checkpoint.folder);
    assert.deepEqual(preview.calibrationFiles, [path.join(workspace, 'data', 'calibration.jsonl')]);
    // What the preview's "Run sweep" sends: the resolved files.
    const field = { kind: 'field' as const, field: 'text' };
    const sweep = await server.connection.sendRequest(SweepRequest.type, {
      model: preview.modelFolder, methods: ['frequency'], counts: [8, 4], calibration: preview.calibrationFiles.map((file) => ({ file, field })), evaluation: { file: preview.calibrationFiles[0], field }, metric: 'loss', seed: 0,
    });
    assert.deepEqual(sweep.counts, [8, 4]);
    assert.equal(sweep.series.length, 1);
    // Keeping all 8 experts is the full model.
    assert.ok(Math.abs(sweep.series[0].values[0] - sweep.baseline) < 1e-6, JSON.stringify(sweep));
    assert.ok(Number.isFinite(sweep.series[0].values[1]));
    // Evaluate (the preview's button) finds the model the same way.
    const evaluated = await server.connection.sendRequest(EvaluatePlanRequest.type, { plan: planPath, datasets: [{ file: preview.calibrationFiles[0] }] });
    assert.deepEqual(evaluated.evaluations.map((e) => e.metric), ['loss', 'perplexity', 'kl', 'top1Agreement']);
  });

  it('names the profile it was made from, and hovers each kept expert with that profile\'s statistics', async () => {
    const text = fs.readFileSync(planPath, 'utf8');
    const plan = JSON.parse(text) as { calibration: { profile?: string }; layers: { layer: number; keptExperts: number[] }[] };
    assert.ok(plan.calibration.profile, `the generated plan names no profile: ${JSON.stringify(plan.calibration)}`);
    assert.match(plan.calibration.profile, /^\.moe-studio\/profiles\//);
    const profile = JSON.parse(fs.readFileSync(path.join(workspace, plan.calibration.profile), 'utf8')) as ProfileFile;

    const uri = pathToFileURL(planPath).toString();
    void server.connection.sendNotification(DidOpenTextDocumentNotification.type, { textDocument: { uri, languageId: 'json', version: 1, text } });
    const document = TextDocument.create(uri, 'json', 1, text);
    let from = 0;
    for (const layer of plan.layers) {
      // The layer's "keptExperts" array, then its first id.
      const arrayAt = text.indexOf('"keptExperts"', text.indexOf(`"layer": ${layer.layer}`, from));
      from = arrayAt;
      const idAt = text.indexOf(String(layer.keptExperts[0]), text.indexOf('[', arrayAt));
      const hover = await server.connection.sendRequest(HoverRequest.type, { textDocument: { uri }, position: document.positionAt(idAt) });
      const markdown = (hover?.contents as MarkupContent | undefined)?.value ?? '';
      assert.match(markdown, new RegExp(`\\*\\*Expert ${layer.keptExperts[0]}\\*\\* of layer ${layer.layer}`));
      assert.match(markdown, /\| token share \| tokens \| soft count \| REAP \|/, `no statistics in the hover:\n${markdown}`);
      const counts = profile.layers.find((l) => l.layer === layer.layer)!.tokenCounts;
      const count = counts[layer.keptExperts[0]];
      const share = (100 * count) / counts.reduce((a, b) => a + b, 0);
      assert.ok(count > 0, 'frequency keeps experts the calibration data routed to');
      assert.match(markdown, new RegExp(`\\| ${share.toFixed(1).replace('.', '\\.')}% \\| ${count} \\|`), `expected ${share.toFixed(1)}% and ${count} tokens:\n${markdown}`);
    }
  });
});
