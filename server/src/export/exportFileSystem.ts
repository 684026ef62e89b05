/**
 * Every change export makes to the disk goes through this seam, so tests can make the Nth write fail
 * (ENOSPC, EIO) and check that nothing is left behind. Reads of the source do not need it.
 */

import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, readdir, rename, rm, statfs } from 'node:fs/promises';
import { join } from 'node:path';

export interface WritableFile {
  /** Returns how many bytes were written, which may be fewer than offered. */
  write(bytes: Uint8Array, offset: number, length: number): Promise<number>;
  sync(): Promise<void>;
  close(): Promise<void>;
}

export interface ExportFileSystem {
  mkdir(path: string): Promise<void>;
  /** Creates a new file; fails if it exists. */
  createFile(path: string): Promise<WritableFile>;
  rename(from: string, to: string): Promise<void>;
  /** Recursive, and no error when absent. */
  remove(path: string): Promise<void>;
  /** Makes renames and new entries in the folder durable. */
  syncFolder(path: string): Promise<void>;
  /** Bytes free for this user on the file system holding `path`; undefined when unknown. */
  freeBytes(path: string): Promise<number | undefined>;
}

export const nodeFileSystem: ExportFileSystem = {
  async mkdir(path) {
    await mkdir(path);
  },
  async createFile(path) {
    const handle = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o644);
    return {
      write: async (bytes, offset, length) => (await handle.write(bytes, offset, length)).bytesWritten,
      sync: () => handle.sync(),
      close: () => handle.close(),
    };
  },
  rename: (from, to) => rename(from, to),
  remove: (path) => rm(path, { recursive: true, force: true }),
  async syncFolder(path) {
    const handle = await open(path, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  },
  async freeBytes(path) {
    try {
      const stats = await statfs(path);
      return stats.bavail * stats.bsize;
    } catch {
      return undefined;
    }
  },
};

/**
 * Where an export is written before it is renamed into place: `.<name>.partial-<pid>-<random>`
 * beside the target. The pid lets a later export tell a folder left by a killed process (kill -9,
 * a crash, a power cut) from one that another export is still writing.
 */
export function partialFolder(parent: string, name: string): string {
  return join(parent, `.${name}.partial-${process.pid}-${randomBytes(6).toString('hex')}`);
}

const PARTIAL_NAME = /^\..+\.partial-(\d+)-[0-9a-f]{12}$/;

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes the partial folders in `parent` whose process is gone, and returns their names so the
 * export can say what it cleaned. Folders of live processes (another export running) are kept.
 */
export async function removeStalePartials(fs: ExportFileSystem, parent: string): Promise<string[]> {
  const names = await readdir(parent).catch(() => [] as string[]);
  const stale = names.filter((name) => {
    const pid = PARTIAL_NAME.exec(name)?.[1];
    return pid !== undefined && Number(pid) !== process.pid && !isRunning(Number(pid));
  });
  for (const name of stale) await fs.remove(join(parent, name));
  return stale;
}
