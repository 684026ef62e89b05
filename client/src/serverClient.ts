import * as vscode from 'vscode';
import {
  CloseAction,
  ErrorAction,
  LanguageClient,
  RevealOutputChannelOn,
  TransportKind,
  type CloseHandlerResult,
  type ErrorHandler,
  type ErrorHandlerResult,
  type LanguageClientOptions,
  type ServerOptions,
} from 'vscode-languageclient/node';
import { HealthNotification, TrustNotification, type InitializationOptions } from '../../common/protocol';
import { readSettings } from './config';
import type { StatusBar } from './statusBar';

/** Restarts within this window count together; past the limit the server stays down and says why. */
const RESTART_WINDOW_MS = 3 * 60 * 1000;
const MAX_RESTARTS = 4;

/** Starts the language server (dist/server.js) and wires its health to the status bar. */
export async function startServer(
  context: vscode.ExtensionContext,
  output: vscode.LogOutputChannel,
  statusBar: StatusBar,
): Promise<LanguageClient> {
  const module = context.asAbsolutePath('dist/server.js');
  const serverOptions: ServerOptions = {
    run: { module, transport: TransportKind.ipc },
    debug: { module, transport: TransportKind.ipc, options: { execArgv: ['--nolazy', '--inspect=6019'] } },
  };
  const initializationOptions: InitializationOptions = {
    trusted: vscode.workspace.isTrusted,
    storageDir: context.globalStorageUri.fsPath,
    threads: vscode.workspace.getConfiguration('moeStudio').get<number>('threads', 0),
    memoryBudget: readSettings().memoryBudget,
    precision: readSettings().precision,
  };
  const clientOptions: LanguageClientOptions = {
    documentSelector: [
      { scheme: 'file', pattern: '**/*.{jsonl,csv,txt,json}' },
    ],
    outputChannel: output,
    revealOutputChannelOn: RevealOutputChannelOn.Never,
    synchronize: { configurationSection: 'moeStudio' },
    initializationOptions,
    errorHandler: new RestartOnceNotice(output, statusBar),
  };
  const client = new LanguageClient('moeStudio', 'MoE Studio', serverOptions, clientOptions);
  context.subscriptions.push(
    client.onNotification(HealthNotification.type, (health) => statusBar.show(health)),
    vscode.workspace.onDidGrantWorkspaceTrust(() => void client.sendNotification(TrustNotification.type, { trusted: true })),
  );
  await client.start();
  return client;
}

/**
 * If the server process dies, restart it and tell the user once per session; a server that keeps
 * dying is left down with an error in the status bar instead of a restart loop.
 */
class RestartOnceNotice implements ErrorHandler {
  private restarts: number[] = [];
  private told = false;

  constructor(
    private readonly output: vscode.LogOutputChannel,
    private readonly statusBar: StatusBar,
  ) {}

  error(): ErrorHandlerResult {
    return { action: ErrorAction.Continue, handled: true };
  }

  closed(): CloseHandlerResult {
    const now = Date.now();
    this.restarts = this.restarts.filter((time) => now - time < RESTART_WINDOW_MS);
    this.restarts.push(now);
    if (this.restarts.length > MAX_RESTARTS) {
      const message = `The MoE Studio server stopped ${this.restarts.length} times in 3 minutes and will not be restarted. See the MoE Studio output for details; run "MoE Studio: Restart language server" to try again.`;
      this.statusBar.show({ state: 'error', message });
      return { action: CloseAction.DoNotRestart, message, handled: false };
    }
    this.output.warn('The MoE Studio server stopped unexpectedly; restarting it.');
    this.statusBar.show({ state: 'starting', message: 'Restarting the language server after a crash' });
    if (!this.told) {
      this.told = true;
      void vscode.window.showWarningMessage('The MoE Studio server stopped unexpectedly and was restarted. The MoE Studio output has its log.');
    }
    return { action: CloseAction.Restart, handled: true };
  }
}
