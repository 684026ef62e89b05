// Runs inside desktop VS Code's extension host (bundled and started by desktop.test.ts):
// the same user journey as the code-server test, through the API instead of the mouse.

import * as assert from 'node:assert/strict';
import { basename } from 'node:path';
import * as vscode from 'vscode';

const EXTENSION_ID = 'moe-studio.moe-studio';

async function until<T>(what: string, probe: () => T | undefined, timeoutMs = 120_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

export async function run(): Promise<void> {
  const dataset = vscode.Uri.file(process.env.MOE_STUDIO_E2E_DATASET ?? '');
  const extension = vscode.extensions.getExtension(EXTENSION_ID);
  assert.ok(extension, `${EXTENSION_ID} is not installed in this VS Code`);
  await extension.activate();

  await vscode.commands.executeCommand('vscode.open', dataset);
  await vscode.commands.executeCommand('moeStudio.profileDataset', dataset);
  const title = `Profile: ${basename(dataset.fsPath)}`;
  const tab = await until(`a "${title}" webview tab`, () =>
    vscode.window.tabGroups.all.flatMap((group) => group.tabs).find((candidate) => candidate.label === title && candidate.input instanceof vscode.TabInputWebview),
  );
  assert.equal(tab.label, title);
}
