/**
 * The full model's metrics, computed once per (model fingerprint, dataset bytes, field, row limit,
 * sequence length) and kept in memory for the process and, when a workspace is known, as small JSON
 * files under `.moe-studio/baselines/` so a new session does not run the full model again.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { FieldSpec } from '../profile/types';
import type { EvaluationResult } from './evaluator';

export interface BaselineKey {
  fingerprint: string;
  contentSha256: string;
  field?: FieldSpec;
  maxRows?: number;
  sequenceLength: number;
}

/** Bump when the way a metric is computed changes, so stale files are ignored. */
const BASELINE_VERSION = 1;

const inMemory = new Map<string, Promise<EvaluationResult>>();

export function baselineFolder(workspaceFolder: string): string {
  return path.join(workspaceFolder, '.moe-studio', 'baselines');
}

export function baselineCacheKey(key: BaselineKey): string {
  return createHash('sha256').update(JSON.stringify({ version: BASELINE_VERSION, ...key, maxRows: key.maxRows ?? null, field: key.field ?? null })).digest('hex');
}

/**
 * The cached baseline for `key`, or `compute()`'s result (stored). `compute` must measure every metric
 * the data supports, so one entry serves any later request.
 */
export async function cachedBaseline(key: BaselineKey, compute: () => Promise<EvaluationResult>, folder?: string): Promise<EvaluationResult> {
  const id = baselineCacheKey(key);
  let entry = inMemory.get(id);
  if (!entry) {
    entry = (async () => {
      const file = folder ? path.join(folder, `${id}.json`) : undefined;
      const saved = file ? readSaved(file) : undefined;
      if (saved) return saved;
      const result = await compute();
      if (file) {
        try {
          await fs.promises.mkdir(folder!, { recursive: true });
          await fs.promises.writeFile(file, JSON.stringify({ version: BASELINE_VERSION, key, result }, null, 2));
        } catch {
          // A read-only workspace only costs the next session a recomputation.
        }
      }
      return result;
    })();
    inMemory.set(id, entry);
    entry.catch(() => inMemory.delete(id));
  }
  return entry;
}

function readSaved(file: string): EvaluationResult | undefined {
  try {
    const saved = JSON.parse(fs.readFileSync(file, 'utf8')) as { version?: number; result?: EvaluationResult };
    return saved.version === BASELINE_VERSION && saved.result && typeof saved.result.values === 'object' ? saved.result : undefined;
  } catch {
    return undefined;
  }
}

/** Forgets the in-memory entries (tests). */
export function clearBaselineMemory(): void {
  inMemory.clear();
}
