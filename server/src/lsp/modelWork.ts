import { ResponseError, type CancellationToken, type Connection, type WorkDoneProgressReporter } from 'vscode-languageserver/node';
import { ErrorCodes } from '../../../common/protocol';
import { CancelledError } from '../errors';
import type { Health } from './health';

export interface ModelWorkContext {
  connection: Connection;
  health: Health;
  isTrusted: () => boolean;
}

export interface ModelWorkRequest {
  /** Shown as the progress title and the busy status. */
  title: string;
  /** Why the request is refused in an untrusted workspace, in the user's terms. */
  untrusted: string;
  /** The client's work-done token: custom requests get no reporter of their own, so one is attached to it. */
  workDoneToken?: string | number;
  token: CancellationToken;
  /** The first progress message, before the work reports anything. */
  starting: string;
}

/**
 * The frame of every request that runs a model or writes one (profile, plan, evaluate, sweep,
 * export): refused in an untrusted workspace, the server busy meanwhile, cancellable progress on the
 * client's token, and the client's Cancel turned into an AbortSignal. Whatever a cancelled piece of
 * work throws on its way out, the user cancelled, and that is what the client hears.
 */
export async function runModelWork<R>(
  { connection, health, isTrusted }: ModelWorkContext,
  request: ModelWorkRequest,
  work: (signal: AbortSignal, progress: WorkDoneProgressReporter) => Promise<R>,
): Promise<R> {
  if (!isTrusted()) throw new ResponseError(ErrorCodes.Untrusted, request.untrusted);
  const abort = new AbortController();
  const cancellation = request.token.onCancellationRequested(() => abort.abort());
  const done = health.beginBusy(request.title);
  const progress = connection.window.attachWorkDoneProgress(request.workDoneToken);
  progress.begin(request.title, 0, request.starting, true);
  try {
    return await work(abort.signal, progress);
  } catch (error) {
    if (abort.signal.aborted && !(error instanceof ResponseError && error.code === ErrorCodes.Cancelled)) throw new CancelledError(`${request.title} cancelled.`);
    throw error;
  } finally {
    progress.done();
    cancellation.dispose();
    done();
  }
}
