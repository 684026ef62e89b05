import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { repoRoot } from '../../scripts/package.mjs';

/** The demo dataset the end-to-end tests profile: plain `{"text": …}` rows, so no field question is asked. */
const DATASET = 'data/code.valid.jsonl';

/**
 * A pristine copy of demo/ (the workspace `npm start` opens) in a temporary folder, so profiles and
 * plans the tests write never land in the repository, and what a developer did in demo/ (profiles,
 * plans, a model exported into demo/plans/) never reaches a test: only the files git tracks are
 * copied, or, outside a git checkout, everything but MoE Studio's own outputs.
 */
export function workspaceWithDataset(): { folder: string; dataset: string } {
  const source = join(repoRoot, 'demo');
  if (!existsSync(join(source, DATASET))) throw new Error(`missing ${join(source, DATASET)}`);
  const folder = join(mkdtempSync(join(tmpdir(), 'moe-studio-e2e-workspace-')), 'demo');
  const tracked = trackedFiles(source);
  if (tracked) {
    for (const file of tracked) {
      mkdirSync(dirname(join(folder, file)), { recursive: true });
      cpSync(join(source, file), join(folder, file));
    }
  } else {
    const untouched = (path: string) => !/(^|\/)(\.moe-studio|plans)(\/|$)/.test(relative(source, path));
    cpSync(source, folder, { recursive: true, filter: untouched });
  }
  return { folder, dataset: join(folder, DATASET) };
}

/** demo/'s files as committed (paths relative to it), or undefined when this is not a git checkout. */
export function trackedFiles(source: string): string[] | undefined {
  const result = spawnSync('git', ['ls-files', '-z', '--', '.'], { cwd: source, encoding: 'utf8' });
  if (result.status !== 0 || !result.stdout) return undefined;
  return result.stdout.split('\0').filter((file) => file !== '' && existsSync(join(source, file)));
}
