/**
 * Activation: the output channel, the status bar, the language server and the commands.
 * All model work happens in the server process; this side only asks and shows.
 */
import * as vscode from 'vscode';
import type { LanguageClient } from 'vscode-languageclient/node';
import { registerCommands } from './commands';
import { startServer } from './serverClient';
import { StatusBar } from './statusBar';

let client: LanguageClient | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const output = vscode.window.createOutputChannel('MoE Studio', { log: true });
  const statusBar = new StatusBar();
  context.subscriptions.push(output, statusBar);
  context.subscriptions.push(...registerCommands({ extension: context, client: () => client, output }));
  try {
    client = await startServer(context, output, statusBar);
  } catch (error) {
    const message = `The MoE Studio server failed to start: ${error instanceof Error ? error.message : String(error)}`;
    output.error(message);
    statusBar.show({ state: 'error', message });
  }
}

export async function deactivate(): Promise<void> {
  await client?.stop();
}
