// `npm run package`: build the bundles, then pack them with onnxruntime-node's linux-x64
// native files into one VSIX. What goes in is decided by the allowlist in .vscodeignore.

import { spawnSync } from 'node:child_process';
import { existsSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
export const VSIX_TARGET = 'linux-x64';
export const vsixPath = join(repoRoot, 'dist', `moe-studio-${VSIX_TARGET}.vsix`);

/** Builds and packages; returns the VSIX path. */
export function packageExtension({ build = true, log = console.log } = {}) {
  if (build) runNode([join(repoRoot, 'scripts', 'build.mjs')], 'build');
  rmSync(vsixPath, { force: true });
  const vsce = createRequire(import.meta.url).resolve('@vscode/vsce/vsce');
  runNode(
    [
      vsce, 'package',
      '--target', VSIX_TARGET,
      '--out', vsixPath,
      // Repository and licence files are optional for a local VSIX; without these flags vsce asks on stdin.
      '--allow-missing-repository',
      '--skip-license',
    ],
    'vsce package',
  );
  if (!existsSync(vsixPath)) throw new Error(`vsce reported success but ${vsixPath} is missing`);
  log(`VSIX: ${relative(process.cwd(), vsixPath) || vsixPath} (${(statSync(vsixPath).size / 1e6).toFixed(1)} MB)`);
  return vsixPath;
}

function runNode(args, what) {
  const result = spawnSync(process.execPath, args, { cwd: repoRoot, stdio: ['ignore', 'inherit', 'inherit'] });
  if (result.status !== 0) throw new Error(`${what} failed (exit ${result.status ?? result.signal})`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  try {
    packageExtension({ build: !process.argv.includes('--no-build') });
  } catch (error) {
    console.error(error instanceof Error ? error.message : error);
    process.exit(1);
  }
}
