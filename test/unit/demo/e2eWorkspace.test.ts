// The end-to-end tests work on a pristine copy of demo/ (issue 17: a model a developer had exported
// into demo/plans/ made two e2e tests fail, because the copy saw two models): only what git tracks.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { test } from 'node:test';
import { trackedFiles, workspaceWithDataset } from '../../e2e/workspace';

function filesUnder(root: string): string[] {
  const found: string[] = [];
  (function walk(dir: string) {
    for (const name of readdirSync(dir)) {
      const full = join(dir, name);
      if (statSync(full).isDirectory()) walk(full);
      else found.push(relative(root, full).split('\\').join('/'));
    }
  })(root);
  return found.sort();
}

test('trackedFiles lists what git tracks, not a stray export, profile or plan beside it', () => {
  const repo = mkdtempSync(join(tmpdir(), 'moe-e2e-tracked-'));
  try {
    const write = (file: string) => {
      mkdirSync(dirname(join(repo, file)), { recursive: true });
      writeFileSync(join(repo, file), file);
    };
    write('model/config.json');
    write('data/a.jsonl');
    const git = (...args: string[]) => execFileSync('git', args, { cwd: repo, stdio: 'pipe' });
    git('init', '-q');
    git('add', '.');
    write('plans/exported/config.json');
    write('.moe-studio/profiles/a.jsonl.model.json');
    write('plans/a.moeplan.json');
    assert.deepEqual(trackedFiles(repo)?.sort(), ['data/a.jsonl', 'model/config.json']);
  } finally {
    rmSync(repo, { recursive: true, force: true });
  }
});

test('the e2e workspace is exactly demo/ as committed', () => {
  const demo = join(import.meta.dirname, '..', '..', '..', 'demo');
  const tracked = trackedFiles(demo);
  if (!tracked) return; // not a git checkout: the copy then filters MoE Studio's outputs by name
  const { folder, dataset } = workspaceWithDataset();
  try {
    assert.deepEqual(filesUnder(folder), [...tracked].sort());
    assert.ok(statSync(dataset).isFile());
  } finally {
    rmSync(dirname(folder), { recursive: true, force: true });
  }
});
