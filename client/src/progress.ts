import * as vscode from 'vscode';
import { ResponseError, WorkDoneProgress, type LanguageClient } from 'vscode-languageclient/node';
import { ErrorCodes } from '../../common/protocol';

/**
 * Runs a long server request under a cancellable notification. The server reports on the
 * `workDoneToken` we make here (LSP work-done progress, with absolute percentages); Cancel cancels
 * the request. Resolves to undefined when the user cancelled.
 */
export async function withServerProgress<R>(
  client: LanguageClient,
  title: string,
  send: (workDoneToken: string, token: vscode.CancellationToken) => Promise<R>,
): Promise<R | undefined> {
  try {
    return await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title, cancellable: true }, async (progress, token) => {
      const workDoneToken = `moeStudio.${Date.now()}.${Math.random().toString(36).slice(2)}`;
      let reported = 0;
      const subscription = client.onProgress(WorkDoneProgress.type, workDoneToken, (value) => {
        if (value.kind === 'end') return;
        const percentage = value.percentage ?? reported;
        progress.report({ message: value.message, increment: Math.max(0, percentage - reported) });
        reported = Math.max(reported, percentage);
      });
      try {
        return await send(workDoneToken, token);
      } finally {
        subscription.dispose();
      }
    });
  } catch (error) {
    if (error instanceof ResponseError && error.code === ErrorCodes.Cancelled) return undefined;
    throw error;
  }
}
