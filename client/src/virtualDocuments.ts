import * as vscode from 'vscode';

/**
 * Read-only documents made of text the server computed (config.json before and after a plan),
 * so they open in VS Code's own diff editor without touching the disk.
 */
export const SCHEME = 'moe-studio';

export class VirtualDocuments implements vscode.TextDocumentContentProvider, vscode.Disposable {
  private readonly contents = new Map<string, string>();
  private readonly changed = new vscode.EventEmitter<vscode.Uri>();
  readonly onDidChange = this.changed.event;
  private readonly registration = vscode.workspace.registerTextDocumentContentProvider(SCHEME, this);

  provideTextDocumentContent(uri: vscode.Uri): string {
    return this.contents.get(uri.toString()) ?? '';
  }

  /** A URI whose document shows `text`; `name` is what the tab title shows. */
  set(name: string, text: string): vscode.Uri {
    const uri = vscode.Uri.from({ scheme: SCHEME, path: `/${name}` });
    this.contents.set(uri.toString(), text);
    this.changed.fire(uri);
    return uri;
  }

  async showDiff(title: string, before: { name: string; text: string }, after: { name: string; text: string }): Promise<void> {
    await vscode.commands.executeCommand('vscode.diff', this.set(before.name, before.text), this.set(after.name, after.text), title);
  }

  dispose(): void {
    this.registration.dispose();
    this.changed.dispose();
  }
}
