/**
 * The files a plan points at (its model folder and its profile), read once and reused until they
 * change on disk: validating on every keystroke must not reopen a checkpoint.
 */
import { stat } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { parseBoundedJson } from '../../boundedJson';
import { loadCheckpoint, type ModelSpec } from '../../checkpoint';
import { readRegularFile } from '../../regularFile';
import { CONFIG_FILE } from '../../checkpoint/loadCheckpoint';

/**
 * Where a path written in a plan points: relative to the plan's folder first, then to each workspace
 * folder (plans store paths relative to the workspace folder). When none exists, the first candidate,
 * so the loader's "does not exist" names a sensible path.
 */
export async function resolvePlanPath(written: string, planFile: string | undefined, workspaceFolders: readonly string[]): Promise<string> {
  if (isAbsolute(written)) return written;
  const bases = [...(planFile ? [dirname(planFile)] : []), ...workspaceFolders];
  const candidates = (bases.length > 0 ? bases : [process.cwd()]).map((base) => resolve(base, written));
  for (const candidate of candidates) {
    if (await modificationTime(candidate) !== undefined) return candidate;
  }
  return candidates[0];
}

async function modificationTime(file: string): Promise<number | undefined> {
  try {
    return (await stat(file)).mtimeMs;
  } catch {
    return undefined;
  }
}

/**
 * A value read from disk, kept while one file's modification time stays the same. Concurrent callers
 * share one read; a failed read is not kept, so fixing the files shows up on the next validation.
 */
class FileCache<T> {
  private readonly entries = new Map<string, { mtimeMs: number; value: Promise<T> }>();

  constructor(
    private readonly read: (key: string) => Promise<T>,
    private readonly stampFile: (key: string) => string,
  ) {}

  async get(key: string): Promise<T> {
    const mtimeMs = await modificationTime(this.stampFile(key));
    const cached = this.entries.get(key);
    if (cached && mtimeMs !== undefined && cached.mtimeMs === mtimeMs) return cached.value;
    const value = this.read(key);
    if (mtimeMs === undefined) {
      this.entries.delete(key);
      return value;
    }
    this.entries.set(key, { mtimeMs, value });
    value.catch(() => {
      if (this.entries.get(key)?.value === value) this.entries.delete(key);
    });
    return value;
  }
}

/** Model specs by folder, invalidated when the folder's config.json changes. */
export class ModelSpecCache {
  private readonly cache: FileCache<ModelSpec>;

  constructor(onLoad: (folder: string) => () => void = () => () => {}) {
    this.cache = new FileCache(async (folder) => {
      const done = onLoad(folder);
      try {
        const checkpoint = await loadCheckpoint(folder);
        // The spec is all the editor needs; the weights stay closed until a command runs the model.
        await checkpoint.weights.close();
        return checkpoint.spec;
      } finally {
        done();
      }
    }, (folder) => join(folder, CONFIG_FILE));
  }

  get(folder: string): Promise<ModelSpec> {
    return this.cache.get(folder);
  }
}

/** Profiles with token records run to tens of MB; a plan naming /dev/zero must not be read forever. */
const MAX_PROFILE_BYTES = 1024 * 2 ** 20;

/** Profile files as parsed JSON, by path. Their shape is checked where it is used (profileStatsForHover). */
export class ProfileCache {
  private readonly cache = new FileCache<unknown>(async (file) => parseBoundedJson((await readRegularFile(file, MAX_PROFILE_BYTES)).toString('utf8')), (file) => file);

  get(file: string): Promise<unknown> {
    return this.cache.get(file);
  }
}
