/**
 * Errors a user can act on. Anything thrown as a `UserError` is reported with its message as is;
 * anything else is a bug and is reported as an internal error with the stack in the log.
 */
export class UserError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UserError';
  }
}

/** Thrown when the user cancels long work; never reported as a failure. */
export class CancelledError extends Error {
  constructor(message = 'Cancelled') {
    super(message);
    this.name = 'CancelledError';
  }
}

/** Stage-specific errors (CheckpointError, …) extend UserError, so one check covers them all. */
export function isUserError(error: unknown): error is UserError {
  return error instanceof UserError;
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
