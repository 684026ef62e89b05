import { fileURLToPath } from 'node:url';
import { UserError } from '../errors';

/**
 * A file system path from what a client sends: a path, or a `file:` URI. Models and datasets are
 * streamed and memory-mapped from disk, so a file on a remote file system is refused.
 */
export function localPath(pathOrUri: string): string {
  if (pathOrUri.startsWith('file:')) return fileURLToPath(pathOrUri);
  if (!pathOrUri.includes(':') || /^[a-zA-Z]:[\\/]/.test(pathOrUri)) return pathOrUri;
  throw new UserError(`Only local files are supported, not ${pathOrUri}.`);
}
