/**
 * Every change export makes to the disk goes through this seam, so tests can make the Nth write fail
 * (ENOSPC, EIO) and check that nothing is left behind. Reads of the source do not need it.
 */

import { constants } from 'node:fs';
import { mkdir, open, rename, rm, statfs } from 'node:fs/promises';

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
