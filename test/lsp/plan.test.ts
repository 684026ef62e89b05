import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import {
  type CodeAction,
  CodeActionRequest,
  CodeLensRequest,
  CompletionRequest,
  DiagnosticSeverity,
  DidChangeTextDocumentNotification,
  DidOpenTextDocumentNotification,
  HoverRequest,
  PublishDiagnosticsNotification,
  type CompletionItem,
  type CompletionList,
  type Diagnostic,
  type MarkupContent,
  type Position,
  type PublishDiagnosticsParams,
} from 'vscode-languageserver-protocol/node';
import { TextDocument } from 'vscode-languageserver-textdocument';
import { PlanCommands } from '../../common/protocol';
import { METHOD_NAMES, PLAN_SCHEMA, formatPlan, predictSavings, type MoePlan, type PlanLayer } from '../../server/src/plan';
import { nextNotification, sendInitialized, startServer, type ServerUnderTest } from '../support/lspClient';
import { writeRandomCheckpoint, type RandomCheckpoint } from '../support/randomCheckpoint';

/** Token shares of layer 0 in the profile: expert 5 is the most used, expert 3 the most used of those layer 0 drops. */
const LAYER0_TOKEN_COUNTS = [10, 5, 20, 30, 8, 40, 3, 12];

describe('plan files in the language server', () => {
  let server: ServerUnderTest;
  let dir: string;
  let checkpoint: RandomCheckpoint;
  let documentCount = 0;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-plan-lsp-'));
    checkpoint = await writeRandomCheckpoint(path.join(dir, 'model'), { architecture: 'MixtralForCausalLM', numLayers: 2, numExperts: 8, topK: 2 });
    const routed = LAYER0_TOKEN_COUNTS.reduce((a, b) => a + b, 0);
    fs.writeFileSync(path.join(dir, 'code.profile.json'), JSON.stringify({
      schema: 'moe-studio.profile',
      layers: [0, 1].map((layer) => ({
        layer,
        numExperts: 8,
        tokenCounts: LAYER0_TOKEN_COUNTS,
        usageShare: LAYER0_TOKEN_COUNTS.map((c) => c / routed),
        softCounts: LAYER0_TOKEN_COUNTS.map((c) => c / 2),
        reap: LAYER0_TOKEN_COUNTS.map((c) => c / 100),
      })),
    }));
    server = await startServer();
    sendInitialized(server);
  });

  after(async () => {
    await server?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  function plan(layers: PlanLayer[], overrides: Partial<MoePlan> = {}): MoePlan {
    return {
      schema: PLAN_SCHEMA,
      version: 1,
      model: { folder: 'model', architecture: 'MixtralForCausalLM', numExperts: 8, numLayers: 2, topK: 2 },
      calibration: { datasets: ['data/code.jsonl'], profile: 'code.profile.json' },
      method: { name: 'frequency', parameters: { targetExperts: 4 }, seed: 0 },
      uniformExpertCount: true,
      exactInHuggingFace: { exact: true, reasons: [] },
      layers,
      predictedSavings: predictSavings(checkpoint.spec, layers, 'F32'),
      evaluations: [],
      ...overrides,
    };
  }

  const goodLayers: PlanLayer[] = [{ layer: 0, keptExperts: [0, 2, 5, 7] }, { layer: 1, keptExperts: [1, 3, 4, 6] }];

  /** Opens `text` as a new plan file and waits for its diagnostics. */
  async function open(text: string): Promise<{ uri: string; document: TextDocument; diagnostics: Diagnostic[] }> {
    const uri = pathToFileURL(path.join(dir, `plan${++documentCount}.moeplan.json`)).toString();
    const published = nextNotification<PublishDiagnosticsParams>(server, PublishDiagnosticsNotification.type, (p) => p.uri === uri);
    void server.connection.sendNotification(DidOpenTextDocumentNotification.type, { textDocument: { uri, languageId: 'json', version: 1, text } });
    const { diagnostics } = await published;
    return { uri, document: TextDocument.create(uri, 'json', 1, text), diagnostics };
  }

  /** The position of `needle` in `document` (the `occurrence`-th one), shifted by `shift` characters. */
  function positionOf(document: TextDocument, needle: string, shift = 0, occurrence = 1): Position {
    let offset = -1;
    for (let i = 0; i < occurrence; i++) offset = document.getText().indexOf(needle, offset + 1);
    assert.notEqual(offset, -1, `${needle} not in the document`);
    return document.positionAt(offset + shift);
  }

  function byCode(diagnostics: Diagnostic[], code: string): Diagnostic[] {
    return diagnostics.filter((d) => d.code === code);
  }

  async function completionLabels(uri: string, position: Position): Promise<string[]> {
    const result = await server.connection.sendRequest(CompletionRequest.type, { textDocument: { uri }, position });
    const items: CompletionItem[] = Array.isArray(result) ? result : (result as CompletionList | null)?.items ?? [];
    return items.sort((a, b) => (a.sortText ?? a.label).localeCompare(b.sortText ?? b.label)).map((item) => item.label);
  }

  it('reports no problem for a plan that matches its model', async () => {
    const { diagnostics } = await open(formatPlan(plan(goodLayers)));
    assert.deepEqual(diagnostics, []);
  });

  it('puts a duplicate id, a wrongly shaped matrix and an unknown id at their tokens', async () => {
    const mergeMatrix = [0, 1, 2].map((row) => Array.from({ length: 8 }, (_, j) => (j === row ? 1 : 0)));
    const { document, diagnostics } = await open(formatPlan(plan([{ layer: 0, keptExperts: [0, 2, 2, 9], mergeMatrix }, goodLayers[1]])));
    const duplicate = byCode(diagnostics, 'duplicateExpert');
    assert.equal(duplicate.length, 1);
    const second2 = positionOf(document, '[0, 2, 2, 9]', 7);
    assert.deepEqual(duplicate[0].range, { start: second2, end: { line: second2.line, character: second2.character + 1 } });
    assert.equal(duplicate[0].severity, DiagnosticSeverity.Error);
    assert.equal(duplicate[0].source, 'MoE Studio');

    const unknown = byCode(diagnostics, 'unknownExpert');
    assert.equal(unknown.length, 1);
    assert.deepEqual(unknown[0].range.start, positionOf(document, '[0, 2, 2, 9]', 10));
    assert.match(String(unknown[0].message), /expert 9 does not exist/);

    const shape = byCode(diagnostics, 'matrixShape');
    assert.equal(shape.length, 1);
    assert.deepEqual(shape[0].range.start, positionOf(document, '"mergeMatrix": ', '"mergeMatrix": '.length));
    assert.match(String(shape[0].message), /3 rows/);
  });

  it('warns past the UNCURL pruning threshold', async () => {
    const { document, diagnostics } = await open(formatPlan(plan([{ layer: 0, keptExperts: [5] }, goodLayers[1]])));
    const warning = byCode(diagnostics, 'pruningFactor');
    assert.equal(warning.length, 1);
    assert.equal(warning[0].severity, DiagnosticSeverity.Warning);
    assert.deepEqual(warning[0].range.start, positionOf(document, '[5]'));
    assert.match(String(warning[0].message), /8\.0×.*4× threshold/);
  });

  it('warns on a merge row that averages experts the named profile says the data relies on', async () => {
    // A narrow task: experts 0 and 1 take 99% of the routed slots in both layers.
    const narrow = [500, 490, 10, 0, 0, 0, 0, 0];
    fs.writeFileSync(path.join(dir, 'narrow.profile.json'), JSON.stringify({ schema: 'moe-studio.profile', layers: [0, 1].map((layer) => ({ layer, numExperts: 8, tokenCounts: narrow })) }));
    const oneHot = (j: number) => Array.from({ length: 8 }, (_, k) => (k === j ? 1 : 0));
    const merged: PlanLayer = { layer: 0, keptExperts: [0, 2, 5, 7], mergeMatrix: [[0.5, 0.5, 0, 0, 0, 0, 0, 0], oneHot(2), oneHot(5), oneHot(7)], routerMap: [0, 2, 5, 7].map(oneHot) };
    const text = formatPlan(plan([merged, goodLayers[1]], { calibration: { datasets: ['data/code.jsonl'], profile: 'narrow.profile.json' } }));
    const { document, diagnostics } = await open(text);
    const warning = byCode(diagnostics, 'heavyMerge');
    assert.equal(warning.length, 1, JSON.stringify(diagnostics));
    assert.equal(warning[0].severity, DiagnosticSeverity.Warning);
    assert.deepEqual(warning[0].range.start, positionOf(document, '[0.5, 0.5'));
    assert.match(String(warning[0].message), /experts 0 \(50%\), 1 \(49%\) of layer 0's routed tokens in narrow\.profile\.json/);
    // The code profile spreads layer 0 over more experts: no expert but 5 reaches twice the uniform share.
    const spread = await open(formatPlan(plan([merged, goodLayers[1]])));
    assert.deepEqual(byCode(spread.diagnostics, 'heavyMerge'), []);
  });

  it('puts one diagnostic on model.folder when the model cannot be loaded, and still checks the rest', async () => {
    const missing = plan(goodLayers, { model: { folder: 'no-such-model', architecture: 'MixtralForCausalLM', numExperts: 8, numLayers: 2, topK: 2 } });
    const { document, diagnostics } = await open(formatPlan(missing));
    assert.equal(diagnostics.length, 1);
    assert.equal(diagnostics[0].code, 'modelUnavailable');
    assert.deepEqual(diagnostics[0].range.start, positionOf(document, '"no-such-model"'));
    assert.match(String(diagnostics[0].message), /does not exist/);

    const withSchemaProblem = { ...missing, method: { name: 'frequency', parameters: {}, seed: -1 } };
    const second = await open(formatPlan(withSchemaProblem));
    assert.deepEqual(second.diagnostics.map((d) => d.code).sort(), ['modelUnavailable', 'schema']);
  });

  it('survives a garbage document and keeps answering', async () => {
    const { uri, diagnostics } = await open('{"layers": [');
    assert.ok(diagnostics.some((d) => d.code === 'syntax'));
    const lenses = await server.connection.sendRequest(CodeLensRequest.type, { textDocument: { uri } });
    assert.ok(Array.isArray(lenses));
    for (const position of [{ line: 0, character: 0 }, { line: 0, character: 11 }, { line: 0, character: 12 }]) {
      await server.connection.sendRequest(HoverRequest.type, { textDocument: { uri }, position });
      await completionLabels(uri, position);
    }
    const good = await open(formatPlan(plan(goodLayers)));
    assert.deepEqual(good.diagnostics, []);
    assert.equal(server.process.exitCode, null);
  });

  it('offers quick fixes whose edits remove the problem', async () => {
    const { uri, document, diagnostics } = await open(formatPlan(plan([{ layer: 0, keptExperts: [0, 2, 5, 5] }, goodLayers[1]])));
    const [duplicate] = byCode(diagnostics, 'duplicateExpert');
    const actions = await server.connection.sendRequest(CodeActionRequest.type, { textDocument: { uri }, range: duplicate.range, context: { diagnostics: [duplicate] } });
    const fix = (actions ?? []).find((a) => 'kind' in a && a.kind === 'quickfix' && /duplicate/.test(a.title));
    assert.ok(fix && 'edit' in fix && fix.edit?.changes, 'a quick fix with edits');
    assert.deepEqual(fix.diagnostics?.[0].range, duplicate.range);
    const fixedText = TextDocument.applyEdits(document, fix.edit.changes[uri]);
    assert.match(fixedText, /"keptExperts": \[0, 2, 5\]/);

    const published = nextNotification<PublishDiagnosticsParams>(server, PublishDiagnosticsNotification.type, (p) => p.uri === uri && p.version === 2);
    void server.connection.sendNotification(DidChangeTextDocumentNotification.type, { textDocument: { uri, version: 2 }, contentChanges: [{ text: fixedText }] });
    const after = await published;
    assert.deepEqual(byCode(after.diagnostics, 'duplicateExpert'), []);
  });

  it('offers to replace or remove an unknown expert id, with its matrix rows', async () => {
    const oneHot = (j: number) => Array.from({ length: 8 }, (_, k) => (k === j ? 1 : 0));
    const layer0: PlanLayer = { layer: 0, keptExperts: [0, 2, 5, 9], mergeMatrix: [0, 2, 5, 7].map(oneHot), routerMap: [0, 2, 5, 7].map(oneHot) };
    const { uri, document, diagnostics } = await open(formatPlan(plan([layer0, goodLayers[1]])));
    const [unknown] = byCode(diagnostics, 'unknownExpert');
    const actions = ((await server.connection.sendRequest(CodeActionRequest.type, { textDocument: { uri }, range: unknown.range, context: { diagnostics: [unknown] } })) ?? [])
      .filter((a): a is CodeAction => 'kind' in a && a.kind === 'quickfix' && a.diagnostics?.[0]?.code === 'unknownExpert');
    assert.deepEqual(actions.map((a) => a.title), ['Remove expert 9', 'Replace expert 9 with expert 1', 'Replace expert 9 with expert 3', 'Replace expert 9 with expert 4']);
    const apply = (action: CodeAction) => TextDocument.applyEdits(document, action.edit!.changes![uri]);
    const removed = JSON.parse(apply(actions[0])).layers[0];
    assert.deepEqual(removed.keptExperts, [0, 2, 5]);
    assert.deepEqual(removed.mergeMatrix, [0, 2, 5].map(oneHot));
    assert.deepEqual(removed.routerMap, [0, 2, 5].map(oneHot));
    const replaced = apply(actions[1]);
    assert.match(replaced, /"keptExperts": \[0, 2, 5, 1\]/);
    const published = nextNotification<PublishDiagnosticsParams>(server, PublishDiagnosticsNotification.type, (p) => p.uri === uri && p.version === 2);
    void server.connection.sendNotification(DidChangeTextDocumentNotification.type, { textDocument: { uri, version: 2 }, contentChanges: [{ text: replaced }] });
    assert.deepEqual(byCode((await published).diagnostics, 'unknownExpert'), []);
  });

  it('keeps the summary lens in step with an edit: counts, savings and exactness as the layers are now', async () => {
    const { uri } = await open(formatPlan(plan(goodLayers)));
    const summary = async () => ((await server.connection.sendRequest(CodeLensRequest.type, { textDocument: { uri } })) ?? [])[3]?.command?.title;
    const percent = (layers: PlanLayer[]) => {
      const { parameters } = predictSavings(checkpoint.spec, layers, 'F32');
      return Math.round(100 * (1 - parameters.after / parameters.before));
    };
    assert.equal(await summary(), `4/8 experts kept · ${percent(goodLayers)}% fewer parameters · exact in HF`);

    // One expert removed from layer 0 by hand: the recorded savings and exactness are now stale.
    const edited: PlanLayer[] = [{ layer: 0, keptExperts: [0, 2, 5] }, goodLayers[1]];
    const stale = formatPlan({ ...plan(goodLayers), layers: edited });
    const published = nextNotification<PublishDiagnosticsParams>(server, PublishDiagnosticsNotification.type, (p) => p.uri === uri && p.version === 2);
    void server.connection.sendNotification(DidChangeTextDocumentNotification.type, { textDocument: { uri, version: 2 }, contentChanges: [{ text: stale }] });
    await published;
    assert.notEqual(percent(edited), percent(goodLayers));
    // Different counts per layer stay exact (the per-layer-count extension; stock loaders are told in stockLoaders).
    assert.equal(await summary(), `3–4/8 experts kept · ${percent(edited)}% fewer parameters · exact in HF`);
  });

  it('hovers an expert id with its layer and profile statistics, and a layer with its pruning factor', async () => {
    const { uri, document } = await open(formatPlan(plan(goodLayers)));
    const hover = await server.connection.sendRequest(HoverRequest.type, { textDocument: { uri }, position: positionOf(document, '[0, 2, 5, 7]', 7) });
    const text = (hover?.contents as MarkupContent).value;
    assert.match(text, /\*\*Expert 5\*\* of layer 0/);
    assert.match(text, /Row 2/);
    assert.match(text, /31\.3%/); // 40 of 128 routed slots
    assert.match(text, /code\.profile\.json/);

    const layerHover = await server.connection.sendRequest(HoverRequest.type, { textDocument: { uri }, position: positionOf(document, '"layer": 1', 2) });
    const layerText = (layerHover?.contents as MarkupContent).value;
    assert.match(layerText, /Keeps 4 of 8 experts: pruning factor E\/E′ = 2\.0×/);
    assert.match(layerText, /Removed: 0, 2, 5, 7/);

    // A merge with neuron orders says which absorbed experts were renumbered first; a valid order draws no diagnostic.
    const I = checkpoint.spec.layers[0].kind === 'moe' ? checkpoint.spec.layers[0].moe.expert.intermediateSize : 0;
    const reversed = Array.from({ length: I }, (_, k) => I - 1 - k);
    const merged: PlanLayer[] = [{ layer: 0, keptExperts: [0, 2], mergeMatrix: [[0.5, 0.5, 0, 0, 0, 0, 0, 0], [0, 0, 0.25, 0.75, 0, 0, 0, 0]], routerMap: [[1, 0, 0, 0, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0, 0, 0]], neuronOrder: { 1: reversed } }, goodLayers[1]];
    const aligned = await open(formatPlan(plan(merged)));
    assert.deepEqual(aligned.diagnostics.filter((d) => /neuronOrder/.test(JSON.stringify(d.message))), []);
    const alignedHover = await server.connection.sendRequest(HoverRequest.type, { textDocument: { uri: aligned.uri }, position: positionOf(aligned.document, '"layer": 0', 2) });
    const alignedText = (alignedHover?.contents as MarkupContent).value;
    assert.match(alignedText, /expert 0 absorbs 1 \(0\.5, neurons aligned\)/);
    assert.match(alignedText, /expert 2 absorbs 3 \(0\.75\)$/m);
  });

  it('completes method names, method parameters and unused expert ids', async () => {
    const { uri, document } = await open(formatPlan(plan(goodLayers)));
    assert.deepEqual(await completionLabels(uri, positionOf(document, '"name": "frequency"', '"name": "fr'.length)), [...METHOD_NAMES]);
    // targetExperts is there: the repairs and adaptive gating, not the global budget that would replace it.
    assert.deepEqual(await completionLabels(uri, positionOf(document, '"parameters": {', '"parameters": {'.length)), ['repairs', 'singleExpertShare']);
    const budgeted = await open(formatPlan(plan(goodLayers)).replace('"targetExperts": 4', '"keepShare": 0.5'));
    assert.ok(budgeted.document.getText().includes('"keepShare": 0.5') && !budgeted.document.getText().includes('targetExperts'));
    assert.deepEqual(await completionLabels(budgeted.uri, positionOf(budgeted.document, '"parameters": {', '"parameters": {'.length)), ['repairs', 'singleExpertShare']);
    // Unused ids of layer 0, most used first by the profile.
    assert.deepEqual(await completionLabels(uri, positionOf(document, '[0, 2, 5, 7]', 1)), ['3', '4', '1', '6']);
  });

  it('puts Evaluate, Preview, Export and a summary lens on the layers', async () => {
    const { uri, document } = await open(formatPlan(plan(goodLayers)));
    const lenses = (await server.connection.sendRequest(CodeLensRequest.type, { textDocument: { uri } })) ?? [];
    assert.deepEqual(lenses.slice(0, 3).map((l) => [l.command?.title, l.command?.command, l.command?.arguments]), [
      ['Evaluate', PlanCommands.evaluate, [uri]],
      ['Preview', PlanCommands.preview, [uri]],
      ['Export', PlanCommands.export, [uri]],
    ]);
    for (const lens of lenses) assert.equal(lens.range.start.line, positionOf(document, '"layers"').line);
    assert.match(lenses[3].command?.title ?? '', /^4\/8 experts kept · \d+% fewer parameters · exact in HF$/);
    assert.equal(lenses[3].command?.command, '');

    // Adaptive gating alone: nothing pruned, so the lens names the gated layers instead of a saving.
    const all = Array.from({ length: 8 }, (_, j) => j);
    const gated = await open(formatPlan(plan([{ layer: 0, keptExperts: all, adaptiveThreshold: 0.1 }, { layer: 1, keptExperts: all, adaptiveThreshold: 0.25 }], { exactInHuggingFace: { exact: false, reasons: ['adaptive gating'] } })));
    const gatedLenses = (await server.connection.sendRequest(CodeLensRequest.type, { textDocument: { uri: gated.uri } })) ?? [];
    assert.equal(gatedLenses[3].command?.title, '8/8 experts kept · adaptive gating in 2 layers (T 0.10–0.25) · not exact in HF');
  });
});
