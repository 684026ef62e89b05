/**
 * Errors a user can act on. Anything thrown as a `UserError` is reported with its message as is;
 * anything else is a bug and is reported as an internal error with the stack in the log.
 */
export class UserError extends Error {
  constructor(message: string) {
    super(capMessage(message));
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

/**
 * Longest message a user error carries. A hostile file can make any quoted value huge (a
 * 200,000-entry shape printed 600 KB); a message is for reading, so it is cut with a note.
 */
export const MAX_MESSAGE_CHARS = 2000;

export function capMessage(message: string): string {
  // The cut message is one character over the limit, so capping it again (a worker's error rebuilt
  // on the main thread) leaves it as is.
  return message.length <= MAX_MESSAGE_CHARS + 1 ? message : `${message.slice(0, MAX_MESSAGE_CHARS)}…`;
}

/** Longest rendering of a value quoted from a file into a message. */
const MAX_QUOTED_CHARS = 80;
/** Entries of a list quoted before the rest is counted: enough for any real shape. */
const MAX_QUOTED_ENTRIES = 8;

/**
 * A value from a file, quoted for an error message: JSON-like, but never more than a line and never
 * recursing more than a few levels, so a 20,000-deep or 200,000-entry value cannot overflow the
 * stack or the message (JSON.stringify does both).
 */
export function quoteValue(value: unknown): string {
  const text = render(value, 3);
  return text.length <= MAX_QUOTED_CHARS ? text : `${text.slice(0, MAX_QUOTED_CHARS)}…`;
}

function render(value: unknown, depth: number): string {
  if (typeof value === 'string') return JSON.stringify(value.length > MAX_QUOTED_CHARS ? `${value.slice(0, MAX_QUOTED_CHARS)}…` : value);
  if (typeof value === 'bigint') return `${value}`;
  if (value === null || typeof value !== 'object') return String(value);
  if (depth === 0) return Array.isArray(value) ? '[…]' : '{…}';
  if (Array.isArray(value)) {
    const shown = value.slice(0, MAX_QUOTED_ENTRIES).map((item) => render(item, depth - 1));
    return `[${shown.join(',')}${value.length > MAX_QUOTED_ENTRIES ? `,… ${value.length - MAX_QUOTED_ENTRIES} more` : ''}]`;
  }
  const keys = Object.keys(value);
  const shown = keys.slice(0, 4).map((key) => `${JSON.stringify(key.slice(0, 40))}:${render((value as Record<string, unknown>)[key], depth - 1)}`);
  return `{${shown.join(',')}${keys.length > 4 ? ',…' : ''}}`;
}
