import * as path from 'node:path';
import * as vscode from 'vscode';
import type { FromWebviewMessage, ToWebviewMessage } from '../../../common/protocol';
import { newNonce, webviewHtml } from './html';

/**
 * The profile dashboard of one dataset. One panel per dataset: profiling the same file again
 * reveals its panel instead of opening a second one.
 */
export class ProfilePanel {
  private static readonly panels = new Map<string, ProfilePanel>();
  /** The latest message of each type: replayed whenever the page (re)loads, e.g. after being hidden. */
  private readonly latest = new Map<ToWebviewMessage['type'], ToWebviewMessage>();
  private ready = false;

  static show(context: vscode.ExtensionContext, dataset: vscode.Uri): ProfilePanel {
    const key = dataset.toString();
    const existing = ProfilePanel.panels.get(key);
    if (existing) {
      existing.panel.reveal();
      return existing;
    }
    const created = new ProfilePanel(context, dataset);
    ProfilePanel.panels.set(key, created);
    return created;
  }

  private readonly panel: vscode.WebviewPanel;

  private constructor(context: vscode.ExtensionContext, private readonly dataset: vscode.Uri) {
    const webviewRoot = vscode.Uri.joinPath(context.extensionUri, 'dist', 'webview');
    this.panel = vscode.window.createWebviewPanel(
      'moeStudio.profile',
      `Profile: ${path.basename(dataset.fsPath)}`,
      vscode.ViewColumn.Beside,
      { enableScripts: true, localResourceRoots: [webviewRoot], retainContextWhenHidden: false },
    );
    const { webview } = this.panel;
    webview.html = webviewHtml({
      cspSource: webview.cspSource,
      scriptUri: webview.asWebviewUri(vscode.Uri.joinPath(webviewRoot, 'profile.js')).toString(),
      styleUri: webview.asWebviewUri(vscode.Uri.joinPath(webviewRoot, 'style.css')).toString(),
      nonce: newNonce(),
      title: `Profile: ${path.basename(dataset.fsPath)}`,
    });
    webview.onDidReceiveMessage((message: FromWebviewMessage) => this.receive(message), undefined, context.subscriptions);
    // Hidden webviews are torn down; the page reloads and says `ready` again when shown.
    this.panel.onDidChangeViewState(({ webviewPanel }) => {
      if (!webviewPanel.visible) this.ready = false;
    }, undefined, context.subscriptions);
    this.panel.onDidDispose(() => ProfilePanel.panels.delete(dataset.toString()), undefined, context.subscriptions);
  }

  post(message: ToWebviewMessage): void {
    this.latest.set(message.type, message);
    if (this.ready) void this.panel.webview.postMessage(message);
  }

  private receive(message: FromWebviewMessage): void {
    switch (message.type) {
      case 'ready':
        this.ready = true;
        for (const message of this.latest.values()) void this.panel.webview.postMessage(message);
        return;
      case 'saveChart':
        void saveChart(this.dataset, message.payload);
        return;
      case 'compare':
        void vscode.commands.executeCommand('moeStudio.compareProfiles', this.dataset);
        return;
    }
  }
}

async function saveChart(dataset: vscode.Uri, { dataUrl, fileName }: { dataUrl: string; fileName: string }): Promise<void> {
  const target = await vscode.window.showSaveDialog({
    defaultUri: vscode.Uri.joinPath(dataset, '..', fileName),
    filters: { 'PNG image': ['png'] },
  });
  if (!target) return;
  const base64 = dataUrl.slice(dataUrl.indexOf(',') + 1);
  await vscode.workspace.fs.writeFile(target, Buffer.from(base64, 'base64'));
  void vscode.window.showInformationMessage(`Saved ${path.basename(target.fsPath)}.`);
}
