import * as path from 'node:path';
import * as vscode from 'vscode';

/**
 * "Compare plans": two plan files side by side in the diff editor. Plans are formatted one layer
 * row per line, so the diff shows exactly which experts and matrix rows differ.
 */
export async function comparePlans(first?: vscode.Uri): Promise<void> {
  const plans = await vscode.workspace.findFiles('**/*.moeplan.json', '**/node_modules/**', 500);
  if (plans.length < 2) {
    void vscode.window.showInformationMessage('Compare plans needs at least two *.moeplan.json files in the workspace.');
    return;
  }
  const items = plans.map((uri) => ({ label: path.basename(uri.fsPath), description: vscode.workspace.asRelativePath(path.dirname(uri.fsPath)), uri }));
  const left = first ?? (await vscode.window.showQuickPick(items, { title: 'Compare plans: first plan' }))?.uri;
  if (!left) return;
  const right = await vscode.window.showQuickPick(items.filter((item) => item.uri.toString() !== left.toString()), { title: `Compare ${path.basename(left.fsPath)} with…` });
  if (!right) return;
  await vscode.commands.executeCommand('vscode.diff', left, right.uri, `${path.basename(left.fsPath)} ↔ ${right.label}`);
}
