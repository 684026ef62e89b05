import * as path from 'node:path';
import * as vscode from 'vscode';
import type { LanguageClient } from 'vscode-languageclient/node';
import { CompareProfilesRequest } from '../../common/protocol';
import { profileOf } from './profileRegistry';
import { showProfilePanel } from './webview/profilePanel';

/**
 * Compare mode: this dataset's profile minus another saved profile (same model), shown as a
 * difference heatmap on the dashboard: which experts this task uses more than the other data.
 */
export async function compareWithProfile(context: vscode.ExtensionContext, client: LanguageClient, dataset: vscode.Uri): Promise<void> {
  const current = profileOf(dataset);
  if (!current) {
    void vscode.window.showInformationMessage(`Profile ${path.basename(dataset.fsPath)} first, then compare it with another dataset's profile.`);
    return;
  }
  const saved = await vscode.workspace.findFiles('**/.moe-studio/profiles/*.json', '**/node_modules/**', 200);
  const others = saved.filter((uri) => uri.fsPath !== current);
  if (others.length === 0) {
    void vscode.window.showInformationMessage('No other saved profile to compare with: profile another dataset with the same model first.');
    return;
  }
  const picked = await vscode.window.showQuickPick(
    others.map((uri) => ({ label: path.basename(uri.fsPath, '.json'), description: vscode.workspace.asRelativePath(uri), uri })),
    { title: `Compare ${path.basename(dataset.fsPath)} with…`, placeHolder: 'A saved profile of another dataset' },
  );
  if (!picked) return;
  const comparison = await client.sendRequest(CompareProfilesRequest.type, { a: current, b: picked.uri.fsPath });
  showProfilePanel(context, dataset).post({ type: 'comparison', payload: comparison });
}
