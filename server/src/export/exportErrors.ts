/**
 * Every way an export can fail, each with a message that stands on its own (the server turns it into a
 * `ResponseError`). Whatever the code, a failed export has left nothing behind. They are user errors:
 * the message is the report, never a stack.
 */

import { UserError } from '../errors';

export type ExportErrorCode =
  | 'invalidPlan'
  | 'notExact'
  | 'targetExists'
  | 'invalidTarget'
  | 'invalidSource'
  | 'noSpace'
  | 'cancelled'
  | 'verifyFailed'
  | 'io';

export class ExportError extends UserError {
  readonly code: ExportErrorCode;
  /** For `notExact`: why a stock loader would compute something else. */
  readonly reasons: string[];

  constructor(code: ExportErrorCode, message: string, reasons: string[] = []) {
    super(message);
    this.name = 'ExportError';
    this.code = code;
    this.reasons = reasons;
  }
}
