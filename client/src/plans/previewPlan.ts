import * as path from 'node:path';
import * as vscode from 'vscode';
import type { LanguageClient } from 'vscode-languageclient/node';
import { PreviewPlanRequest, SweepRequest, type PlanMethodName, type PreviewPlanResult } from '../../../common/protocol';
import { chooseDatasets } from '../datasetChoice';
import { chooseTextField } from '../fieldChoice';
import { withServerProgress } from '../progress';
import type { VirtualDocuments } from '../virtualDocuments';
import { PanelHost } from '../webview/panelHost';

const SWEEP_METHODS: PlanMethodName[] = ['random', 'frequency', 'reap', 'uncurl', 'naee'];
/** Typing pauses this long before the preview is computed again. */
const REFRESH_DELAY_MS = 300;

/** Open previews by plan URI: showing one again refreshes it instead of opening a second. */
const openPreviews = new Map<string, () => Promise<void>>();

/**
 * "Preview": the plan's kept, merged and dropped experts per layer, savings and quality, with a
 * sweep of quality against experts kept for several methods, and config.json before/after. The
 * panel follows the plan document as it is now: every edit (typed, undone, or the results an
 * evaluation writes) computes the preview again from the editor's text.
 */
export async function previewPlan(context: vscode.ExtensionContext, client: LanguageClient, documents: VirtualDocuments, planUri: vscode.Uri): Promise<void> {
  const key = planUri.toString();
  const existing = openPreviews.get(key);
  let preview: PreviewPlanResult | undefined;
  let requested = 0;
  let timer: NodeJS.Timeout | undefined;
  const refresh = async () => {
    const request = ++requested;
    const document = vscode.workspace.textDocuments.find((d) => d.uri.toString() === key);
    try {
      const result = await client.sendRequest(PreviewPlanRequest.type, { plan: planUri.fsPath, ...(document?.isDirty ? { text: document.getText() } : {}) });
      if (request !== requested) return; // a later edit's preview is on its way
      preview = result;
      panel.post({ type: 'planPreview', payload: result });
    } catch (error) {
      if (request === requested) panel.post({ type: 'error', payload: { message: error instanceof Error ? error.message : String(error) } });
    }
  };
  if (existing) {
    PanelHost.show(context, panelOptions());
    return existing();
  }
  const changes = vscode.workspace.onDidChangeTextDocument((event) => {
    if (event.document.uri.toString() !== key || event.contentChanges.length === 0) return;
    clearTimeout(timer);
    timer = setTimeout(() => void refresh(), REFRESH_DELAY_MS);
  });
  // A save (e.g. after evaluate wrote its results) or a change on disk by another program.
  const saves = vscode.workspace.onDidSaveTextDocument((document) => {
    if (document.uri.toString() === key) void refresh();
  });
  const watcher = vscode.workspace.createFileSystemWatcher(new vscode.RelativePattern(vscode.Uri.file(path.dirname(planUri.fsPath)), path.basename(planUri.fsPath)));
  watcher.onDidChange(() => {
    const open = vscode.workspace.textDocuments.find((d) => d.uri.toString() === key);
    if (!open?.isDirty) void refresh();
  });
  const panel = PanelHost.show(context, panelOptions());
  openPreviews.set(key, refresh);
  await refresh();

  function panelOptions() {
    return {
      key: `plan:${key}`,
      viewType: 'moeStudio.planPreview',
      title: `Plan: ${path.basename(planUri.fsPath, '.moeplan.json')}`,
      script: 'planPreview',
      saveNextTo: planUri,
      onDispose: () => {
        clearTimeout(timer);
        changes.dispose();
        saves.dispose();
        watcher.dispose();
        openPreviews.delete(key);
      },
      onMessage: (message: { type: string }) => {
        switch (message.type) {
          case 'openConfigDiff':
            if (preview) void showConfigDiff(documents, preview);
            return;
          case 'evaluatePlan':
            void vscode.commands.executeCommand('moeStudio.evaluatePlan', key);
            return;
          case 'exportPlan':
            void vscode.commands.executeCommand('moeStudio.exportPlan', key);
            return;
          case 'runSweep': {
            const current = preview;
            if (!current) return panel.post({ type: 'sweepCancelled', payload: {} });
            // Whatever happens, the button leaves "Sweeping…": a result, the error, or ready again.
            void runSweep(context, client, current, planUri).then(
              (sweep) => panel.post(sweep ? { type: 'sweep', payload: sweep } : { type: 'sweepCancelled', payload: {} }),
              (error) => {
                const text = error instanceof Error ? error.message : String(error);
                panel.post({ type: 'error', payload: { message: `The sweep failed: ${text}` } });
                void vscode.window.showErrorMessage(text);
              },
            );
            return;
          }
        }
      },
    };
  }
}

export function showConfigDiff(documents: VirtualDocuments, preview: { configBefore: string; configAfter: string }): Promise<void> {
  return documents.showDiff('config.json: before ↔ after the plan', { name: 'before/config.json', text: preview.configBefore }, { name: 'after/config.json', text: preview.configAfter });
}

async function runSweep(context: vscode.ExtensionContext, client: LanguageClient, preview: PreviewPlanResult, planUri: vscode.Uri) {
  const [evaluation] = (await chooseDatasets(context, { title: 'Held-out data to measure quality on', canPickMany: false, remember: `moeStudio.sweep:${planUri.toString()}`, preferMatching: /valid/ })) ?? [];
  if (!evaluation) return undefined;
  const field = await chooseTextField(context, client, evaluation);
  if (!field) return undefined;
  // The model and calibration files as the server resolved them for the preview (plans write paths
  // relative to the workspace, not to the plan's folder).
  const calibration = preview.calibrationFiles.map((file) => ({ file, field }));
  const E = preview.plan.model.numExperts;
  return withServerProgress(client, 'Sweeping experts kept', (workDoneToken, token) =>
    client.sendRequest(SweepRequest.type, {
      model: preview.modelFolder,
      methods: SWEEP_METHODS,
      counts: Array.from({ length: E }, (_, i) => E - i),
      calibration: calibration.length ? calibration : [{ file: evaluation.fsPath, field }],
      evaluation: { file: evaluation.fsPath, field },
      metric: 'loss',
      seed: 0,
      workDoneToken,
    }, token));
}
