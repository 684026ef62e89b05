import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { ResponseError, type LanguageClient } from 'vscode-languageclient/node';
import { formatBytes } from '../../../common/format';
import { ErrorCodes, ExportPlanRequest, ExportPreviewRequest, type ExportFormat } from '../../../common/protocol';
import { withServerProgress } from '../progress';
import type { VirtualDocuments } from '../virtualDocuments';
import { showConfigDiff } from './previewPlan';

/**
 * "Export pruned checkpoint": show what changes (tensors and bytes, config diff), ask where, write
 * atomically on the server, never overwrite without asking, then open the model card.
 */
export async function exportPlan(client: LanguageClient, documents: VirtualDocuments, planUri: vscode.Uri): Promise<void> {
  const preview = await client.sendRequest(ExportPreviewRequest.type, { plan: planUri.fsPath });
  const exact = preview.notExactReasons.length === 0;
  const format = await vscode.window.showQuickPick(
    [
      { label: 'Hugging Face checkpoint', format: 'huggingface' as ExportFormat, description: exact ? 'safetensors + config.json, loads in transformers and vLLM' : '$(error) not exact for this plan', detail: exact ? undefined : preview.notExactReasons.join(' ') },
      { label: 'ONNX model', format: 'onnx' as ExportFormat, description: 'one graph with the plan baked in (adaptive gating and router mapping included)' },
    ],
    { title: `Export: ${formatBytes(preview.bytesBefore)} → ${formatBytes(preview.bytesAfter)} (${formatBytes(preview.bytesSaved)} saved)` },
  );
  if (!format) return;
  if (format.format === 'huggingface' && !exact) {
    void vscode.window.showErrorMessage(`A Hugging Face config cannot express this plan exactly: ${preview.notExactReasons.join(' ')} Export it as ONNX instead.`);
    return;
  }
  await showConfigDiff(documents, preview);
  const counts = preview.tensors.reduce<Record<string, number>>((acc, tensor) => ({ ...acc, [tensor.action]: (acc[tensor.action] ?? 0) + 1 }), {});
  const planStem = path.basename(planUri.fsPath, '.moeplan.json');
  // By default under the workspace's .moe-studio/exports/, which the model search skips: an export
  // becomes a second workspace model (and "which model?" a question) only where the user puts it.
  const workspace = vscode.workspace.getWorkspaceFolder(planUri)?.uri.fsPath ?? path.dirname(planUri.fsPath);
  const defaultTarget = path.join(workspace, '.moe-studio', 'exports', format.format === 'onnx' ? `${planStem}.onnx` : `${planStem}-model`);
  const target = await vscode.window.showInputBox({
    title: 'Export to',
    prompt: `Tensors: ${Object.entries(counts).map(([action, n]) => `${n} ${action}`).join(', ')}. The source model is not modified. Under .moe-studio/ the export is not offered as a workspace model; elsewhere in the workspace it is.`,
    value: defaultTarget,
    validateInput: (value) => (value.trim() ? undefined : 'A path is needed'),
  });
  if (!target) return;
  // The suggested folder is MoE Studio's own: made here. A folder the user names must exist already.
  const exportsFolder = path.dirname(defaultTarget);
  if (path.dirname(path.resolve(target)) === exportsFolder) await fs.promises.mkdir(exportsFolder, { recursive: true });
  const send = (overwrite: boolean) => withServerProgress(client, `Exporting ${path.basename(target)}`, (workDoneToken, token) =>
    client.sendRequest(ExportPlanRequest.type, { plan: planUri.fsPath, format: format.format, target, overwrite, workDoneToken }, token));
  let result;
  try {
    result = await send(false);
  } catch (error) {
    if (!(error instanceof ResponseError && error.code === ErrorCodes.ExportTargetExists)) throw error;
    const choice = await vscode.window.showWarningMessage(`${target} already exists. Replace it? The old one is kept until the new one is complete and verified.`, { modal: true }, 'Replace');
    if (choice !== 'Replace') return;
    result = await send(true);
  }
  if (!result) return;
  const card = path.join(result.target, 'README.md');
  if (fs.existsSync(card)) await vscode.commands.executeCommand('markdown.showPreview', vscode.Uri.file(card));
  void vscode.window.showInformationMessage(`Exported ${result.files.length} files to ${result.target}.`, 'Reveal in Explorer').then((choice) => {
    if (choice) void vscode.commands.executeCommand('revealInExplorer', vscode.Uri.file(result.target));
  });
}
