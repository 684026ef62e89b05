#!/usr/bin/env node
// `npm run fuzz -- --seconds N`: the fuzz suite (test/fuzz) for N seconds per surface from fresh
// seeds, instead of the fixed, seeded inputs `npm test` runs. A failing input is saved under
// test/fuzz/regressions/ and replayed by every later run, `npm test` included.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const at = process.argv.indexOf('--seconds');
const seconds = at >= 0 ? Number(process.argv[at + 1]) : 60;
if (!Number.isFinite(seconds) || seconds <= 0) {
  console.error('Usage: npm run fuzz -- --seconds N   (seconds per surface, default 60)');
  process.exit(2);
}
const files = readdirSync(join(root, 'test/fuzz')).filter((name) => name.endsWith('.test.ts')).sort().map((name) => join('test/fuzz', name));
// The LSP surface runs the bundled server.
const build = spawnSync(process.execPath, [join(root, 'scripts/build.mjs')], { cwd: root, stdio: 'inherit' });
if (build.status !== 0) process.exit(build.status ?? 1);
console.log(`Fuzzing ${files.length} files for ${seconds} s per surface.`);
const result = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=spec', '--test-concurrency=1', ...files], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, FUZZ_SECONDS: String(seconds) },
});
process.exit(result.status ?? 1);
