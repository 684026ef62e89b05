import { constants } from 'node:fs';
import { open } from 'node:fs/promises';

/**
 * Reads a whole file that must be a regular file of bounded size. A folder, a device (`/dev/zero`
 * never ends) or a FIFO (blocks forever on open) named like a model or dataset file is refused, and
 * the size is checked before anything is allocated. The open is non-blocking so a FIFO cannot hang
 * it; the error keeps `code` (ENOENT, …) so callers can tell a missing file from a bad one.
 */
export async function readRegularFile(path: string, maxBytes: number): Promise<Buffer> {
  const handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) throw Object.assign(new Error('it is not a regular file (a folder, device or pipe)'), { code: 'ENOTFILE' });
    if (stats.size > maxBytes) throw Object.assign(new Error(`it is ${stats.size} bytes, over the ${maxBytes}-byte limit`), { code: 'ETOOBIG' });
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

/** Metadata files (config.json, an index, tokenizer.json) are kilobytes to a few tens of MB. */
export const MAX_METADATA_BYTES = 256 * 1024 * 1024;
