import * as path from 'node:path';
import * as vscode from 'vscode';
import type { LanguageClient } from 'vscode-languageclient/node';
import { ProfileDatasetRequest, SummarizeDatasetRequest, type ProfileDatasetResult } from '../../common/protocol';
import { readSettings } from './config';
import { chooseTextField } from './fieldChoice';
import { chooseModel } from './modelChoice';
import { rememberProfile } from './profileRegistry';
import { withServerProgress } from './progress';
import { showProfilePanel } from './webview/profilePanel';

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

  const panel = showProfilePanel(context, dataset);
  const summary = await client.sendRequest(SummarizeDatasetRequest.type, { uri: dataset.toString() });
  panel.post({ type: 'datasetSummary', payload: summary });

  let result: ProfileDatasetResult | undefined;
  try {
    result = await withServerProgress(client, `Profiling experts on ${vscode.workspace.asRelativePath(dataset)}`, (workDoneToken, token) =>
      client.sendRequest(
        ProfileDatasetRequest.type,
        { uri: dataset.toString(), model, field, workspaceFolder, settings: readSettings(dataset).profile, force: options.force, workDoneToken },
        token,
      ));
  } catch (error) {
    panel.post({ type: 'error', payload: { message: error instanceof Error ? error.message : String(error) } });
    throw error;
  }
  if (!result) {
    panel.post({ type: 'error', payload: { message: 'Profiling was cancelled; any previous profile of this dataset is unchanged.' } });
    return undefined;
  }
  rememberProfile(dataset, result.profilePath);
  panel.post({ type: 'profile', payload: { profile: result.profile, profilePath: result.profilePath, notes: result.notes } });
  const how = result.reused ? 'Reused the saved profile (model, data and settings unchanged)' : 'Profiled';
  void vscode.window
    .showInformationMessage(`${how}: ${result.profile.dataset.tokens.toLocaleString()} tokens of ${path.basename(dataset.fsPath)}.${result.notes.length ? ` ${result.notes.join(' ')}` : ''}`, ...(result.reused ? ['Profile again'] : []))
    .then((choice) => {
      if (choice) void profileDataset(context, client, dataset, { force: true });
    });
  return result;
}
