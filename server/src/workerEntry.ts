import * as fs from 'node:fs';
import * as path from 'node:path';
import type { WorkerOptions } from 'node:worker_threads';

/**
 * How to start one of the server's worker threads. Bundled, `bundled` (e.g. runtimeWorker.js) sits in
 * `dir` next to the bundle running the caller. Under tsx (tests, benches) `dir` is the caller's source
 * folder and the entry is the TypeScript file `source` beside it; Node 20 workers ignore an `--import tsx`
 * loader for a .ts entry, so a one-line CommonJS bootstrap registers tsx's require hook first and then
 * requires the TypeScript entry.
 */
export function workerEntry(dir: string, bundled: string, source: string): { script: string; options: WorkerOptions } {
  const bundle = path.join(dir, bundled);
  if (fs.existsSync(bundle)) return { script: bundle, options: {} };
  return { script: `require('tsx/cjs'); require(${JSON.stringify(path.join(dir, source))});`, options: { eval: true } };
}
