#!/usr/bin/env node
// `npm run fuzz -- [--seconds N] [--inputs M] [--only surface[,surface]]`: the fuzz suite's surfaces
// (test/fuzz) from fresh seeds, each until N seconds or M inputs, whichever comes first (default 60 s),
// instead of the fixed, seeded inputs `npm test` runs. They run outside node:test
// (test/fuzz/plainRunner.ts), 10-20% cheaper per input, and can be picked. A failing input is saved
// under test/fuzz/regressions/ and replayed by every later run, `npm test` included.
// FUZZ_REPORT=<file> appends one JSON line of figures per surface.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const usage = 'Usage: npm run fuzz -- [--seconds N] [--inputs M] [--only surface[,surface]]   (per surface; default 60 s)';

function option(name) {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 ? process.argv[at + 1] : undefined;
}
const positive = (text) => text === undefined || (Number.isFinite(Number(text)) && Number(text) > 0);
const seconds = option('seconds');
const inputs = option('inputs');
const only = option('only');
if (!positive(seconds) || !positive(inputs) || (process.argv.includes('--only') && !only)) {
  console.error(usage);
  process.exit(2);
}
const limits = seconds === undefined && inputs === undefined ? { FUZZ_SECONDS: '60' } : { ...(seconds ? { FUZZ_SECONDS: seconds } : {}), ...(inputs ? { FUZZ_INPUTS: inputs } : {}) };

// The LSP surface runs the bundled server.
if (!only || only.split(',').includes('lsp')) {
  const build = spawnSync(process.execPath, [join(root, 'scripts/build.mjs')], { cwd: root, stdio: 'inherit' });
  if (build.status !== 0) process.exit(build.status ?? 1);
}
console.log(`Fuzzing ${only ?? 'every surface'}: ${[seconds && `${seconds} s`, inputs && `${inputs} inputs`].filter(Boolean).join(' or ') || '60 s'} per surface.`);
const result = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'test/fuzz/plainRunner.ts')], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, ...limits, FUZZ_PLAIN: '1', ...(only ? { FUZZ_ONLY: only } : {}) },
});
process.exit(result.status ?? 1);
