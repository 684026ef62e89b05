import * as path from 'node:path';
import * as vscode from 'vscode';
import type { ProfileRunSettings } from '../../common/protocol';

/** Typed access to the `moeStudio.*` settings; nothing else reads the configuration directly. */
export const SECTION = 'moeStudio';

export interface Settings {
  /** Model folder as an absolute path (relative settings resolve against the workspace folder); '' when unset. */
  model: string;
  profile: ProfileRunSettings;
  /** The runtime's memory budget as written ('6GB'); '' for the default from the machine's RAM. */
  memoryBudget: string;
  precision: 'fp32' | 'int8';
}

export function readSettings(scope?: vscode.Uri): Settings {
  const config = vscode.workspace.getConfiguration(SECTION, scope);
  const model = config.get<string>('model', '').trim();
  const folder = scope ? vscode.workspace.getWorkspaceFolder(scope) : vscode.workspace.workspaceFolders?.[0];
  const maxRows = config.get<number>('profile.maxRows', 2000);
  return {
    model: model && !path.isAbsolute(model) && folder ? path.join(folder.uri.fsPath, model) : model,
    profile: {
      sequenceLength: config.get<number>('profile.sequenceLength', 256),
      maxRows: maxRows > 0 ? maxRows : null,
      tokenRecords: config.get<number>('profile.tokenRecords', 4096),
      onMalformed: config.get<'skip' | 'stop'>('profile.onMalformedRows', 'skip'),
      threads: config.get<number>('threads', 0),
    },
    memoryBudget: config.get<string>('memoryBudget', '').trim(),
    precision: config.get<'fp32' | 'int8'>('precision', 'fp32'),
  };
}
