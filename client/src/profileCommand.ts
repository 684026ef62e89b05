import * as path from 'node:path';
import * as vscode from 'vscode';
import { ResponseError, WorkDoneProgress, type LanguageClient } from 'vscode-languageclient/node';
import { ErrorCodes, ProfileDatasetRequest, SummarizeDatasetRequest, type ProfileDatasetResult } from '../../common/protocol';
import { readSettings } from './config';
import { chooseTextField } from './fieldChoice';
import { chooseModel } from './modelChoice';
import { rememberProfile } from './profileRegistry';
import { ProfilePanel } from './webview/profilePanel';

/**
 * Right-click on a dataset → "Profile experts on this dataset": choose the model and the text field,
 * open the dashboard with the dataset summary, then run the profile with progress and Cancel.
 */
export async function profileDataset(context: vscode.ExtensionContext, client: LanguageClient, dataset: vscode.Uri, options: { force?: boolean } = {}): Promise<ProfileDatasetResult | undefined> {
  const model = await chooseModel(context, client, dataset);
  if (!model) return undefined;
  const field = await chooseTextField(context, client, dataset);
  if (!field) return undefined;
  const workspaceFolder = vscode.workspace.getWorkspaceFolder(dataset)?.uri.fsPath ?? path.dirname(dataset.fsPath);

  const panel = ProfilePanel.show(context, dataset);
  const summary = await client.sendRequest(SummarizeDatasetRequest.type, { uri: dataset.toString() });
  panel.post({ type: 'datasetSummary', payload: summary });

  const title = `Profiling experts on ${vscode.workspace.asRelativePath(dataset)}`;
  try {
    const result = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title, cancellable: true },
      async (progress, token) => {
        // The server reports tokens, tokens/s and time left on this token; percentages arrive absolute.
        const workDoneToken = `moeStudio.profile.${Date.now()}.${Math.random().toString(36).slice(2)}`;
        let reported = 0;
        const subscription = client.onProgress(WorkDoneProgress.type, workDoneToken, (value) => {
          if (value.kind === 'end') return;
          const percentage = value.percentage ?? reported;
          progress.report({ message: value.message, increment: Math.max(0, percentage - reported) });
          reported = Math.max(reported, percentage);
        });
        try {
          return await client.sendRequest(
            ProfileDatasetRequest.type,
            { uri: dataset.toString(), model, field, workspaceFolder, settings: readSettings(dataset).profile, force: options.force, workDoneToken },
            token,
          );
        } finally {
          subscription.dispose();
        }
      },
    );
    rememberProfile(dataset, result.profilePath);
    panel.post({ type: 'profile', payload: { profile: result.profile, profilePath: result.profilePath, notes: result.notes } });
    const how = result.reused ? 'Reused the saved profile (model, data and settings unchanged)' : 'Profiled';
    void vscode.window.showInformationMessage(`${how}: ${result.profile.dataset.tokens.toLocaleString()} tokens of ${path.basename(dataset.fsPath)}.${result.notes.length ? ` ${result.notes.join(' ')}` : ''}`, ...(result.reused ? ['Profile again'] : []))
      .then((choice) => {
        if (choice) void profileDataset(context, client, dataset, { force: true });
      });
    return result;
  } catch (error) {
    if (error instanceof ResponseError && error.code === ErrorCodes.Cancelled) {
      panel.post({ type: 'error', payload: { message: 'Profiling was cancelled; any previous profile of this dataset is unchanged.' } });
      return undefined;
    }
    throw error;
  }
}
