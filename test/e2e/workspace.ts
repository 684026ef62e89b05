import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../../scripts/package.mjs';

/** The workspace the end-to-end tests open, demo/ as `npm start` shows it, and the first of its JSONL datasets. */
export function workspaceWithDataset(): { folder: string; dataset: string } {
  const folder = join(repoRoot, 'demo');
  const data = join(folder, 'data');
  const jsonl = existsSync(data) ? readdirSync(data).filter((name) => name.endsWith('.jsonl')).sort() : [];
  if (jsonl.length === 0) throw new Error(`no .jsonl dataset in ${data}`);
  return { folder, dataset: join(data, jsonl[0]) };
}
