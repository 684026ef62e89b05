import * as path from 'node:path';
import * as vscode from 'vscode';

const DATASET_GLOB = '**/*.{jsonl,json,csv,parquet,txt}';
const EXCLUDE = '{**/node_modules/**,**/.moe-studio/**,**/.git/**}';

/**
 * Dataset files of the workspace in a quick pick (model folders' JSON files and plans left out).
 * `remember` keys the last choice in workspace state so the next pick starts from it.
 */
export async function chooseDatasets(context: vscode.ExtensionContext, options: { title: string; canPickMany: boolean; remember: string; preferMatching?: RegExp }): Promise<vscode.Uri[] | undefined> {
  const files = (await vscode.workspace.findFiles(DATASET_GLOB, EXCLUDE, 2000)).filter((uri) => !isModelOrPlanFile(uri));
  if (files.length === 0) {
    void vscode.window.showErrorMessage('No dataset files (JSONL, JSON, CSV, Parquet, text) in this workspace.');
    return undefined;
  }
  const previous = new Set(context.workspaceState.get<string[]>(options.remember, []));
  const items = files
    .map((uri) => ({ label: path.basename(uri.fsPath), description: vscode.workspace.asRelativePath(path.dirname(uri.fsPath)), uri, picked: previous.has(uri.toString()) }))
    .sort((a, b) => Number(b.picked) - Number(a.picked) || Number(options.preferMatching?.test(b.label) ?? 0) - Number(options.preferMatching?.test(a.label) ?? 0) || a.label.localeCompare(b.label));
  const picked = options.canPickMany
    ? await vscode.window.showQuickPick(items, { title: options.title, canPickMany: true })
    : await vscode.window.showQuickPick(items, { title: options.title }).then((item) => (item ? [item] : undefined));
  if (!picked || picked.length === 0) return undefined;
  await context.workspaceState.update(options.remember, picked.map((item) => item.uri.toString()));
  return picked.map((item) => item.uri);
}

function isModelOrPlanFile(uri: vscode.Uri): boolean {
  const name = path.basename(uri.fsPath);
  return name.endsWith('.moeplan.json') || ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json', 'model.safetensors.index.json', 'special_tokens_map.json'].includes(name);
}
