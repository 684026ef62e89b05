#!/usr/bin/env node
// `npm run bench`: every benchmark under bench/ (`*.bench.ts`), one process each so peak memory
// figures are their own. Timing lives here, never in tests. `npm run bench -- runtime` runs the
// benchmarks whose file name contains "runtime"; `npm run bench -- real` the real-shape models under a memory
// budget (realShape.bench.ts: about 23 GB of temporary checkpoints, most of an hour on two cores).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const filters = process.argv.slice(2);
const benchDir = join(root, 'bench');
const files = existsSync(benchDir)
  ? readdirSync(benchDir).filter((name) => name.endsWith('.bench.ts') && (filters.length === 0 || filters.some((f) => name.includes(f)))).sort()
  : [];
if (files.length === 0) {
  console.error(`No benchmarks matched${filters.length ? ` ${filters.join(', ')}` : ''} in bench/.`);
  process.exit(1);
}
spawnSync(process.execPath, [join(root, 'scripts/build.mjs')], { cwd: root, stdio: 'inherit' });
let failed = 0;
for (const file of files) {
  console.log(`\n════ ${file} ════`);
  const result = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', join(benchDir, file)], { cwd: root, stdio: 'inherit' });
  if (result.status !== 0) {
    failed++;
    console.error(`✖ ${file} exited with ${result.status ?? result.signal}`);
  }
}
process.exit(failed ? 1 : 0);
