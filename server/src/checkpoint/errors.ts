import { UserError } from '../errors';

/**
 * One error type for everything that can be wrong with a model folder. The server turns it into a
 * `ResponseError`, so the message must stand on its own: which file, which tensor, what is wrong.
 */

export type CheckpointErrorCode =
  | 'notFound'
  | 'unsafeFormat'
  | 'invalidSafetensors'
  | 'invalidIndex'
  | 'invalidConfig'
  | 'unsupportedArchitecture'
  | 'unsupportedDtype'
  | 'missingTensor'
  | 'wrongShape'
  | 'invalidTokenizer';

export class CheckpointError extends UserError {
  readonly code: CheckpointErrorCode;
  /** The file the problem is in, when there is one. */
  readonly file?: string;

  constructor(code: CheckpointErrorCode, message: string, file?: string) {
    super(message);
    this.name = 'CheckpointError';
    this.code = code;
    this.file = file;
  }
}
