import * as path from 'node:path';
import * as vscode from 'vscode';
import { PanelHost } from './panelHost';

/** The profile dashboard of one dataset (webview/src/profile.ts). */
export function showProfilePanel(context: vscode.ExtensionContext, dataset: vscode.Uri): PanelHost {
  return PanelHost.show(context, {
    key: `profile:${dataset.toString()}`,
    viewType: 'moeStudio.profile',
    title: `Profile: ${path.basename(dataset.fsPath)}`,
    script: 'profile',
    saveNextTo: dataset,
    onMessage: (message) => {
      if (message.type === 'compare') void vscode.commands.executeCommand('moeStudio.compareProfiles', dataset);
    },
  });
}
