import { ErrorCodes as LspErrorCodes, ResponseError, type CancellationToken, type Connection } from 'vscode-languageserver/node';
import { ErrorCodes, REQUEST_PARAM_SCHEMAS } from '../../../common/protocol';
import { CancelledError, capMessage, errorMessage, isUserError } from '../errors';

/**
 * Wraps a request handler so that the server never dies on a request: params are checked against
 * the request's schema in common/protocol.ts first (a malformed request is answered InvalidParams
 * naming the field, and the handler can trust its types); user errors become
 * `ResponseError`s with their message, cancellation becomes `RequestCancelled`, and anything else
 * is logged with its stack and reported as an internal error with a human message.
 */
export function safeHandler<P, R>(
  connection: Connection,
  method: string,
  handler: (params: P, token: CancellationToken) => Promise<R> | R,
): (params: P, token: CancellationToken) => Promise<R | ResponseError<void>> {
  const schema = REQUEST_PARAM_SCHEMAS[method];
  return async (params, token) => {
    const problem = schema?.(params, 'params');
    if (problem) return new ResponseError(LspErrorCodes.InvalidParams, `${method}: ${problem}.`);
    try {
      return await handler(params, token);
    } catch (error) {
      return toResponseError(connection, method, error);
    }
  };
}

export function toResponseError(connection: Connection, method: string, error: unknown): ResponseError<void> {
  if (error instanceof ResponseError) return error;
  if (error instanceof CancelledError) return new ResponseError(ErrorCodes.Cancelled, error.message);
  if (isUserError(error)) {
    connection.console.warn(`${method}: ${errorMessage(error)}`);
    return new ResponseError(ErrorCodes.InvalidInput, errorMessage(error));
  }
  const stack = error instanceof Error && error.stack ? error.stack : String(error);
  connection.console.error(`${method} failed unexpectedly:\n${stack}`);
  return new ResponseError(
    ErrorCodes.Internal,
    capMessage(`MoE Studio hit an internal error in ${method}: ${errorMessage(error)}. The server log has the details.`),
  );
}
