import * as path from 'node:path';
import * as vscode from 'vscode';
import type { FromWebviewMessage, ToWebviewMessage } from '../../../common/protocol';
import { newNonce, webviewHtml } from './html';

export interface PanelOptions {
  /** One panel per key: showing the same key again reveals the existing panel. */
  key: string;
  viewType: string;
  title: string;
  /** The webview bundle, `dist/webview/<script>.js`. */
  script: string;
  /** Messages other than `ready` and `saveChart`, which every panel handles the same way. */
  onMessage?: (message: FromWebviewMessage) => void;
  /** Where "Save as PNG" suggests saving. */
  saveNextTo: vscode.Uri;
  /** Called once when the user closes the panel. */
  onDispose?: () => void;
}

/**
 * A webview panel of MoE Studio: strict CSP, scripts from dist/webview only, data by postMessage.
 * The latest message of each type is replayed whenever the page (re)loads, e.g. after being hidden.
 */
export class PanelHost {
  private static readonly panels = new Map<string, PanelHost>();
  private readonly latest = new Map<ToWebviewMessage['type'], ToWebviewMessage>();
  private readonly panel: vscode.WebviewPanel;
  private ready = false;

  static show(context: vscode.ExtensionContext, options: PanelOptions): PanelHost {
    const existing = PanelHost.panels.get(options.key);
    if (existing) {
      existing.panel.reveal();
      return existing;
    }
    const created = new PanelHost(context, options);
    PanelHost.panels.set(options.key, created);
    return created;
  }

  private constructor(context: vscode.ExtensionContext, private readonly options: PanelOptions) {
    const webviewRoot = vscode.Uri.joinPath(context.extensionUri, 'dist', 'webview');
    this.panel = vscode.window.createWebviewPanel(options.viewType, options.title, vscode.ViewColumn.Beside, {
      enableScripts: true,
      localResourceRoots: [webviewRoot],
    });
    const { webview } = this.panel;
    webview.html = webviewHtml({
      cspSource: webview.cspSource,
      scriptUri: webview.asWebviewUri(vscode.Uri.joinPath(webviewRoot, `${options.script}.js`)).toString(),
      styleUri: webview.asWebviewUri(vscode.Uri.joinPath(webviewRoot, 'style.css')).toString(),
      nonce: newNonce(),
      title: options.title,
    });
    webview.onDidReceiveMessage((message: FromWebviewMessage) => this.receive(message), undefined, context.subscriptions);
    // Hidden webviews are torn down; the page reloads and says `ready` again when shown.
    this.panel.onDidChangeViewState(({ webviewPanel }) => {
      if (!webviewPanel.visible) this.ready = false;
    }, undefined, context.subscriptions);
    this.panel.onDidDispose(() => {
      PanelHost.panels.delete(options.key);
      options.onDispose?.();
    }, undefined, context.subscriptions);
  }

  post(message: ToWebviewMessage): void {
    // Replayed in the order last posted, so a reloaded page ends in the state it had (a fixed error stays fixed).
    this.latest.delete(message.type);
    this.latest.set(message.type, message);
    if (this.ready) void this.panel.webview.postMessage(message);
  }

  private receive(message: FromWebviewMessage): void {
    switch (message.type) {
      case 'ready':
        this.ready = true;
        for (const latest of this.latest.values()) void this.panel.webview.postMessage(latest);
        return;
      case 'saveChart':
        void saveChart(this.options.saveNextTo, message.payload);
        return;
      default:
        this.options.onMessage?.(message);
    }
  }
}

async function saveChart(nextTo: vscode.Uri, { dataUrl, fileName }: { dataUrl: string; fileName: string }): Promise<void> {
  const target = await vscode.window.showSaveDialog({
    defaultUri: vscode.Uri.joinPath(nextTo, '..', fileName),
    filters: { 'PNG image': ['png'] },
  });
  if (!target) return;
  const base64 = dataUrl.slice(dataUrl.indexOf(',') + 1);
  await vscode.workspace.fs.writeFile(target, Buffer.from(base64, 'base64'));
  void vscode.window.showInformationMessage(`Saved ${path.basename(target.fsPath)}.`);
}
