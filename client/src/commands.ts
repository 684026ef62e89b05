import * as vscode from 'vscode';
import type { LanguageClient } from 'vscode-languageclient/node';
import { ErrorCodes, SummarizeDatasetRequest } from '../../common/protocol';
import { ResponseError } from 'vscode-languageclient/node';
import { ProfilePanel } from './webview/profilePanel';

/** Everything a command needs, resolved once at activation. */
export interface CommandContext {
  extension: vscode.ExtensionContext;
  client: () => LanguageClient | undefined;
  output: vscode.LogOutputChannel;
}

export function registerCommands(ctx: CommandContext): vscode.Disposable[] {
  return [
    vscode.commands.registerCommand('moeStudio.profileDataset', (uri?: vscode.Uri) => profileDataset(ctx, uri)),
    vscode.commands.registerCommand('moeStudio.showServerLog', () => ctx.output.show(true)),
    vscode.commands.registerCommand('moeStudio.restartServer', async () => {
      await ctx.client()?.restart();
    }),
  ];
}

/**
 * Right-click on a dataset → "Profile experts on this dataset". Until expert profiling lands this
 * opens the dashboard with the dataset's summary from the server (rows and sizes) and says so.
 */
async function profileDataset(ctx: CommandContext, uri: vscode.Uri | undefined): Promise<void> {
  const dataset = uri ?? vscode.window.activeTextEditor?.document.uri;
  if (!dataset) {
    void vscode.window.showErrorMessage('Open or select a dataset file (JSONL, JSON, CSV, Parquet or text) to profile.');
    return;
  }
  if (!vscode.workspace.isTrusted) {
    void vscode.window.showWarningMessage(
      'MoE Studio runs models only in trusted workspaces, because a model folder and its data are code-like input. Trust this workspace to profile experts.',
      'Manage Workspace Trust',
    ).then((choice) => choice && vscode.commands.executeCommand('workbench.trust.manage'));
    return;
  }
  const client = ctx.client();
  if (!client) {
    void vscode.window.showErrorMessage('The MoE Studio server is not running. See the MoE Studio output.');
    return;
  }
  const panel = ProfilePanel.show(ctx.extension, dataset);
  try {
    const summary = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: `Reading ${vscode.workspace.asRelativePath(dataset)}`, cancellable: true },
      (_progress, token) => client.sendRequest(SummarizeDatasetRequest.type, { uri: dataset.toString() }, token),
    );
    panel.post({ type: 'datasetSummary', payload: summary });
    void vscode.window.showInformationMessage('Expert profiling is coming soon: the dashboard shows the dataset summary for now.');
  } catch (error) {
    if (error instanceof ResponseError && error.code === ErrorCodes.Cancelled) return;
    const message = error instanceof Error ? error.message : String(error);
    panel.post({ type: 'error', payload: { message } });
    void vscode.window.showErrorMessage(message);
  }
}
