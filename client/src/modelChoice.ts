import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { LanguageClient } from 'vscode-languageclient/node';
import { FindModelsRequest } from '../../common/protocol';
import { readSettings } from './config';

const REMEMBERED_MODEL = 'moeStudio.model';

/**
 * The model to run: the `moeStudio.model` setting, else the folder chosen before in this workspace,
 * else a quick pick of the model folders found in the workspace (remembered for next time).
 */
export async function chooseModel(context: vscode.ExtensionContext, client: LanguageClient, scope: vscode.Uri): Promise<string | undefined> {
  const configured = readSettings(scope).model;
  if (configured) return configured;
  const remembered = context.workspaceState.get<string>(REMEMBERED_MODEL);
  if (remembered && fs.existsSync(path.join(remembered, 'config.json'))) return remembered;

  const folders = (vscode.workspace.workspaceFolders ?? []).map((folder) => folder.uri.fsPath);
  const candidates = await client.sendRequest(FindModelsRequest.type, { folders });
  const browse = { label: '$(folder-opened) Choose a model folder…', folder: undefined as string | undefined };
  let folder: string | undefined;
  if (candidates.length === 1) {
    folder = candidates[0].folder;
  } else {
    const picked = await vscode.window.showQuickPick(
      [
        ...candidates.map((candidate) => ({
          label: vscode.workspace.asRelativePath(candidate.folder),
          description: candidate.architecture,
          folder: candidate.folder as string | undefined,
        })),
        browse,
      ],
      { title: 'MoE Studio: which model?', placeHolder: candidates.length ? 'Model folders found in the workspace' : 'No model folder (config.json + *.safetensors) found in the workspace' },
    );
    if (!picked) return undefined;
    folder = picked.folder;
  }
  if (!folder) {
    const chosen = await vscode.window.showOpenDialog({ canSelectFolders: true, canSelectFiles: false, openLabel: 'Use this model', title: 'A Hugging Face model folder (config.json, *.safetensors, tokenizer.json)' });
    folder = chosen?.[0]?.fsPath;
    if (!folder) return undefined;
  }
  await context.workspaceState.update(REMEMBERED_MODEL, folder);
  return folder;
}
