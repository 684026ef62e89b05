import * as vscode from 'vscode';

/** Typed access to the `moeStudio.*` settings; nothing else reads the configuration directly. */
export const SECTION = 'moeStudio';

export interface Settings {
  /** Model folder, resolved against the first workspace folder when relative; '' when unset. */
  model: string;
  /** onnxruntime intra-op threads; 0 means all cores but one. */
  threads: number;
}

export function readSettings(scope?: vscode.Uri): Settings {
  const config = vscode.workspace.getConfiguration(SECTION, scope);
  return {
    model: config.get<string>('model', '').trim(),
    threads: config.get<number>('threads', 0),
  };
}
