import * as vscode from 'vscode';
import type { LanguageClient } from 'vscode-languageclient/node';
import { EvaluatePlanRequest } from '../../../common/protocol';
import { chooseDatasets } from '../datasetChoice';
import { withServerProgress } from '../progress';

/**
 * "Evaluate plan": runs the pruned model on held-out data against the full model and writes the
 * results into the plan as an undoable edit, so they are saved, diffed and committed with it.
 */
export async function evaluatePlan(context: vscode.ExtensionContext, client: LanguageClient, planUri: vscode.Uri): Promise<void> {
  const datasets = await chooseDatasets(context, { title: 'Held-out data to evaluate on', canPickMany: true, remember: `moeStudio.evaluation:${planUri.toString()}`, preferMatching: /valid|test|mc/ });
  if (!datasets) return;
  const document = await vscode.workspace.openTextDocument(planUri);
  if (document.isDirty) await document.save();
  const result = await withServerProgress(client, `Evaluating ${vscode.workspace.asRelativePath(planUri)}`, (workDoneToken, token) =>
    client.sendRequest(EvaluatePlanRequest.type, { plan: planUri.fsPath, datasets: datasets.map((uri) => ({ file: uri.fsPath })), workDoneToken }, token));
  if (!result) return;
  const edit = new vscode.WorkspaceEdit();
  edit.replace(planUri, new vscode.Range(document.positionAt(0), document.positionAt(document.getText().length)), result.updatedPlanText);
  await vscode.workspace.applyEdit(edit);
  await document.save();
  const lines = result.evaluations.map((e) => `${e.dataset} ${e.metric}: ${format(e.value)}${e.baseline !== undefined ? ` (full model ${format(e.baseline)})` : ''}`);
  void vscode.window.showInformationMessage(`Evaluated: ${lines.join(' · ')}`);
}

function format(value: number): string {
  return Math.abs(value) >= 100 ? value.toFixed(1) : value.toFixed(4);
}
