#!/usr/bin/env node
// `npm test`: the type check, then every test in one run of node's test runner, in the order
// their needs grow: unit → language server (needs the bundles) → fuzzing (a fixed, seeded number
// of inputs per surface; `npm run fuzz` runs it longer) → VSIX contents (needs the package) →
// webviews in headless Chromium → end to end in code-server.
// Pass folder names to run a subset: `npm test -- unit lsp`.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const stages = ['unit', 'lsp', 'fuzz', 'package', 'webview', 'e2e'];
const selected = process.argv.slice(2).filter((arg) => stages.includes(arg));
const run = selected.length > 0 ? selected : stages;

function step(title, command, args) {
  console.log(`\n▶ ${title}`);
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit' });
  if (result.status !== 0) {
    console.error(`✖ ${title} failed (exit ${result.status ?? result.signal}).`);
    process.exit(result.status || 1);
  }
}

function testFiles(folder) {
  const dir = join(root, 'test', folder);
  if (!existsSync(dir)) return [];
  const found = [];
  (function walk(current) {
    for (const name of readdirSync(current).sort()) {
      const full = join(current, name);
      if (statSync(full).isDirectory()) walk(full);
      else if (name.endsWith('.test.ts')) found.push(relative(root, full));
    }
  })(dir);
  return found;
}

step('Type check (tsc --noEmit)', process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '--noEmit', '-p', root]);
step('Build (esbuild)', process.execPath, [join(root, 'scripts/build.mjs')]);
if (run.some((stage) => stage === 'package' || stage === 'e2e') && existsSync(join(root, 'scripts/package.mjs'))) {
  step('Package the VSIX', process.execPath, [join(root, 'scripts/package.mjs'), '--no-build']);
}
// The desktop VS Code runner (@vscode/test-electron) needs a VS Code binary that cannot be
// downloaded here (code-server covers the same flow); without VSCODE_EXECUTABLE its test skips
// itself, so the summary counts it as skipped rather than leaving it out.
const files = run.flatMap(testFiles);
step(`Tests (${files.length} files: ${run.join(', ')})`, process.execPath, [
  '--import', 'tsx',
  '--test',
  '--test-reporter=spec',
  '--test-concurrency=1',
  ...files,
]);
