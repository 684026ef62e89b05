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

/**
 * "Preview": the plan's kept, merged and dropped experts per layer, savings and quality, with a
 * sweep of quality against experts kept for several methods, and config.json before/after.
 */
export async function previewPlan(context: vscode.ExtensionContext, client: LanguageClient, documents: VirtualDocuments, planUri: vscode.Uri): Promise<void> {
  const preview = await client.sendRequest(PreviewPlanRequest.type, { plan: planUri.fsPath });
  const panel = PanelHost.show(context, {
    key: `plan:${planUri.toString()}`,
    viewType: 'moeStudio.planPreview',
    title: `Plan: ${path.basename(planUri.fsPath, '.moeplan.json')}`,
    script: 'planPreview',
    saveNextTo: planUri,
    onMessage: (message) => {
      switch (message.type) {
        case 'openConfigDiff':
          void showConfigDiff(documents, preview);
          return;
        case 'evaluatePlan':
          void vscode.commands.executeCommand('moeStudio.evaluatePlan', planUri.toString());
          return;
        case 'exportPlan':
          void vscode.commands.executeCommand('moeStudio.exportPlan', planUri.toString());
          return;
        case 'runSweep':
          void runSweep(context, client, preview, planUri).then((sweep) => sweep && panel.post({ type: 'sweep', payload: sweep }), (error) => {
            void vscode.window.showErrorMessage(error instanceof Error ? error.message : String(error));
          });
          return;
      }
    },
  });
  panel.post({ type: 'planPreview', payload: preview });
}

export function showConfigDiff(documents: VirtualDocuments, preview: { configBefore: string; configAfter: string }): Promise<void> {
  return documents.showDiff('config.json: before ↔ after the plan', { name: 'before/config.json', text: preview.configBefore }, { name: 'after/config.json', text: preview.configAfter });
}

async function runSweep(context: vscode.ExtensionContext, client: LanguageClient, preview: PreviewPlanResult, planUri: vscode.Uri) {
  const [evaluation] = (await chooseDatasets(context, { title: 'Held-out data to measure quality on', canPickMany: false, remember: `moeStudio.sweep:${planUri.toString()}`, preferMatching: /valid/ })) ?? [];
  if (!evaluation) return undefined;
  const field = await chooseTextField(context, client, evaluation);
  if (!field) return undefined;
  const calibration = preview.plan.calibration.datasets.map((file) => ({ file: path.resolve(path.dirname(planUri.fsPath), file), field }));
  const E = preview.plan.model.numExperts;
  return withServerProgress(client, 'Sweeping experts kept', (workDoneToken, token) =>
    client.sendRequest(SweepRequest.type, {
      model: path.resolve(path.dirname(planUri.fsPath), preview.plan.model.folder),
      methods: SWEEP_METHODS,
      counts: Array.from({ length: E }, (_, i) => E - i),
      calibration: calibration.length ? calibration : [{ file: evaluation.fsPath, field }],
      evaluation: { file: evaluation.fsPath, field },
      metric: 'loss',
      seed: 0,
      workDoneToken,
    }, token));
}
