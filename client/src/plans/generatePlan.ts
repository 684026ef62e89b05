import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { LanguageClient } from 'vscode-languageclient/node';
import { DescribeModelRequest, GeneratePlanRequest } from '../../../common/protocol';
import type { FieldSpec } from '../../../server/src/profile/types';
import { chooseDatasets } from '../datasetChoice';
import { chooseTextField } from '../fieldChoice';
import { chooseModel } from '../modelChoice';
import { lastProfiledDataset } from '../profileRegistry';
import { withServerProgress } from '../progress';
import { countChoices, GATING_TARGETS, METHODS, REPAIR_CHOICES } from './wizardChoices';

/** "Generate pruning plan": quick picks for the method, the target count and the calibration data. */
export async function generatePlan(context: vscode.ExtensionContext, client: LanguageClient, scope?: vscode.Uri): Promise<void> {
  const workspaceFolder = (scope && vscode.workspace.getWorkspaceFolder(scope)) ?? vscode.workspace.workspaceFolders?.[0];
  if (!workspaceFolder) {
    void vscode.window.showErrorMessage('Open a workspace folder to generate plans in.');
    return;
  }
  const model = await chooseModel(context, client, scope ?? workspaceFolder.uri);
  if (!model) return;
  const summary = await client.sendRequest(DescribeModelRequest.type, { folder: model });

  const method = await vscode.window.showQuickPick(METHODS.map((entry) => ({ ...entry, detail: entry.detail })), { title: 'Pruning method', matchOnDetail: true });
  if (!method) return;

  const E = summary.numExperts;
  let target: { count?: number; name: string; parameters?: Record<string, unknown>; singleExpertShare?: number } | undefined;
  if (method.method === 'adaptiveGating') {
    const gating = await vscode.window.showQuickPick(GATING_TARGETS, { title: 'Adaptive gating: how far to go?' });
    if (!gating) return;
    target = gating.singleExpertShare !== undefined
      ? { name: `share${100 * gating.singleExpertShare}`, singleExpertShare: gating.singleExpertShare }
      : { name: `loss${gating.maxLossIncrease}`, parameters: { maxLossIncrease: gating.maxLossIncrease } };
  } else {
    const picked = await vscode.window.showQuickPick(countChoices(method.method, E, summary.moeLayers.length, summary.topK), {
      title: `How many experts should each of the ${summary.moeLayers.length} MoE layers keep?`,
    });
    if (!picked) return;
    target = { count: picked.count, name: picked.name, ...(picked.keepShare !== undefined && { parameters: { keepShare: picked.keepShare } }) };
  }

  // Repairs change nothing when every expert stays (adaptive gating).
  let repairs: string[] = [];
  if (method.method !== 'adaptiveGating') {
    const repair = await vscode.window.showQuickPick(REPAIR_CHOICES, { title: 'Repair after pruning? (closed form, on the calibration tokens)' });
    if (!repair) return;
    repairs = repair.repairs;
  }

  const calibration = await chooseDatasets(context, { title: 'Calibration data (the task to keep quality on)', canPickMany: true, remember: 'moeStudio.calibration', preferMatching: /train/, first: lastProfiledDataset() });
  if (!calibration) return;
  const withFields: { file: string; field: FieldSpec }[] = [];
  for (const file of calibration) {
    const field = await chooseTextField(context, client, file);
    if (!field) return;
    withFields.push({ file: file.fsPath, field });
  }

  const plansFolder = path.join(workspaceFolder.uri.fsPath, 'plans');
  const stem = `${path.basename(calibration[0].fsPath).replace(/\.(train|valid)?\.?[^.]+$/, '')}.${method.method}-${target.name}${repairs.length > 0 ? '-repaired' : ''}`;
  const output = uniquePath(plansFolder, stem, '.moeplan.json');
  const request = {
    model,
    method: method.method,
    targetExperts: target.count,
    calibration: withFields,
    seed: 0,
    output,
    parameters: { ...method.parameters, ...target.parameters, ...(repairs.length > 0 && { repairs }) },
    singleExpertShare: target.singleExpertShare,
  };
  const result = await withServerProgress(client, `Generating a ${method.label} plan`, (workDoneToken, token) =>
    client.sendRequest(GeneratePlanRequest.type, { ...request, workDoneToken }, token));
  if (!result) return;
  await vscode.window.showTextDocument(vscode.Uri.file(result.planPath));
  for (const warning of result.warnings ?? []) void vscode.window.showWarningMessage(warning);
}

function uniquePath(folder: string, stem: string, extension: string): string {
  for (let n = 1; ; n++) {
    const candidate = path.join(folder, `${stem}${n > 1 ? `-${n}` : ''}${extension}`);
    if (!fs.existsSync(candidate)) return candidate;
  }
}
