import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';

const DATASET_GLOB = '**/*.{jsonl,json,csv,parquet,txt}';
const EXCLUDE = '{**/node_modules/**,**/.moe-studio/**,**/.git/**}';

export interface DatasetChoiceOptions {
  title: string;
  canPickMany: boolean;
  /** Workspace-state key of the last choice, which the next pick starts from. */
  remember: string;
  preferMatching?: RegExp;
  /** A dataset (URI string) listed first, e.g. the one just profiled. */
  first?: string;
}

/**
 * Dataset files of the workspace in a quick pick (model folders' JSON files, plans, and JSON files
 * that are not arrays of rows, such as reports, left out).
 */
export async function chooseDatasets(context: vscode.ExtensionContext, options: DatasetChoiceOptions): Promise<vscode.Uri[] | undefined> {
  const candidates = (await vscode.workspace.findFiles(DATASET_GLOB, EXCLUDE, 2000)).filter((uri) => !isModelOrPlanFile(uri));
  const files = (await Promise.all(candidates.map(async (uri) => ((await isDataset(uri)) ? uri : undefined)))).filter((uri): uri is vscode.Uri => uri !== undefined);
  if (files.length === 0) {
    void vscode.window.showErrorMessage('No dataset files (JSONL, JSON, CSV, Parquet, text) in this workspace.');
    return undefined;
  }
  const previous = new Set(context.workspaceState.get<string[]>(options.remember, []));
  const isFirst = (uri: vscode.Uri) => Number(uri.toString() === options.first);
  const items = files
    .map((uri) => ({
      label: path.basename(uri.fsPath),
      description: `${vscode.workspace.asRelativePath(path.dirname(uri.fsPath))}${isFirst(uri) ? ' · just profiled' : ''}`,
      uri,
      picked: previous.has(uri.toString()),
    }))
    .sort((a, b) => isFirst(b.uri) - isFirst(a.uri) || Number(b.picked) - Number(a.picked) || Number(options.preferMatching?.test(b.label) ?? 0) - Number(options.preferMatching?.test(a.label) ?? 0) || a.label.localeCompare(b.label));
  const picked = options.canPickMany
    ? await vscode.window.showQuickPick(items, { title: `${options.title}: one or more`, placeHolder: 'Space or click ticks several datasets; Enter confirms', canPickMany: true })
    : await vscode.window.showQuickPick(items, { title: options.title }).then((item) => (item ? [item] : undefined));
  if (!picked || picked.length === 0) return undefined;
  await context.workspaceState.update(options.remember, picked.map((item) => item.uri.toString()));
  return picked.map((item) => item.uri);
}

/** A `.json` dataset is an array of rows; an object (a report, a config) is not one. Other formats are taken by their extension. */
async function isDataset(uri: vscode.Uri): Promise<boolean> {
  if (!uri.fsPath.toLowerCase().endsWith('.json')) return true;
  try {
    const handle = await fs.promises.open(uri.fsPath, 'r');
    try {
      const { buffer, bytesRead } = await handle.read(Buffer.alloc(4096), 0, 4096, 0);
      return buffer.subarray(0, bytesRead).toString('utf8').replace(/^\uFEFF/, '').trimStart().startsWith('[');
    } finally {
      await handle.close();
    }
  } catch {
    return false;
  }
}

function isModelOrPlanFile(uri: vscode.Uri): boolean {
  const name = path.basename(uri.fsPath);
  return name.endsWith('.moeplan.json') || ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json', 'model.safetensors.index.json', 'special_tokens_map.json'].includes(name);
}
