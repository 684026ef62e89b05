import { cpSync, existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../../scripts/package.mjs';

/** The demo dataset the end-to-end tests profile: plain `{"text": …}` rows, so no field question is asked. */
const DATASET = 'data/code.valid.jsonl';

/**
 * A copy of demo/ (the workspace `npm start` opens) in a temporary folder, so profiles and plans the
 * tests write never land in the repository or collide with a developer's own.
 */
export function workspaceWithDataset(): { folder: string; dataset: string } {
  const source = join(repoRoot, 'demo');
  if (!existsSync(join(source, DATASET))) throw new Error(`missing ${join(source, DATASET)}`);
  const folder = join(mkdtempSync(join(tmpdir(), 'moe-studio-e2e-workspace-')), 'demo');
  cpSync(source, folder, { recursive: true, filter: (path) => !path.includes('.moe-studio') });
  return { folder, dataset: join(folder, DATASET) };
}
