// The packaged extension, shared by the package and end-to-end tests: rebuilt only when a
// source it is made from changed since the last `npm run package`.

import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { withLock } from '../../scripts/codeServer.mjs';
import { packageExtension, repoRoot, vsixPath } from '../../scripts/package.mjs';

const SOURCES = ['client', 'server', 'common', 'webview', 'package.json', 'package-lock.json', '.vscodeignore', 'scripts/build.mjs', 'scripts/package.mjs'];

function newestSourceTime(path: string): number {
  if (!existsSync(path)) return 0;
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.mtimeMs;
  return readdirSync(path).reduce((newest, name) => Math.max(newest, newestSourceTime(join(path, name))), stat.mtimeMs);
}

/** Path of a VSIX built from the current sources; test files running in parallel build it once. */
export function freshVsix(): Promise<string> {
  return withLock(join(repoRoot, '.cache', 'package.lock'), async () => {
    const sourcesTime = Math.max(...SOURCES.map((source) => newestSourceTime(join(repoRoot, source))));
    if (existsSync(vsixPath) && statSync(vsixPath).mtimeMs > sourcesTime) return vsixPath;
    return packageExtension();
  });
}
