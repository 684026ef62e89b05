/** A file written once, front to back, whose SHA-256 and size are computed from the bytes as they go out. */

import { createHash, type Hash } from 'node:crypto';
import type { ExportFileSystem, WritableFile } from './exportFileSystem';

export interface WrittenFile {
  /** Relative to the export folder. */
  path: string;
  bytes: number;
  sha256: string;
}

export class HashedFile {
  private readonly hash: Hash = createHash('sha256');
  private bytes = 0;

  private constructor(
    private readonly relativePath: string,
    private readonly file: WritableFile,
  ) {}

  static async create(fs: ExportFileSystem, absolutePath: string, relativePath: string): Promise<HashedFile> {
    return new HashedFile(relativePath, await fs.createFile(absolutePath));
  }

  async write(chunk: Uint8Array): Promise<void> {
    this.hash.update(chunk);
    let written = 0;
    while (written < chunk.byteLength) written += await this.file.write(chunk, written, chunk.byteLength - written);
    this.bytes += chunk.byteLength;
  }

  /** Flushes to the disk and closes. */
  async finish(): Promise<WrittenFile> {
    try {
      await this.file.sync();
    } finally {
      await this.file.close();
    }
    return { path: this.relativePath, bytes: this.bytes, sha256: this.hash.digest('hex') };
  }

  /** Closes without flushing, after a failure; the folder is about to be removed anyway. */
  async abandon(): Promise<void> {
    await this.file.close().catch(() => undefined);
  }

  static async writeWhole(fs: ExportFileSystem, absolutePath: string, relativePath: string, contents: Uint8Array | string): Promise<WrittenFile> {
    const file = await HashedFile.create(fs, absolutePath, relativePath);
    try {
      await file.write(typeof contents === 'string' ? new TextEncoder().encode(contents) : contents);
    } catch (error) {
      await file.abandon();
      throw error;
    }
    return file.finish();
  }
}
