/** Regression tests for hostile datasets (issue #15): each is a UserError naming the file, never a raw error or a hang. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { readRecords } from '../../../server/src/datasets/records';
import { sandboxedRecords } from '../../../server/src/datasets/sandboxedRecords';
import { summarizeDataset } from '../../../server/src/datasets/summarize';
import { isUserError } from '../../../server/src/errors';

let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'moe-hostile-data-'));
});
after(() => rm(root, { recursive: true, force: true }));

async function assertUserError(work: Promise<unknown>, pattern: RegExp): Promise<void> {
  await assert.rejects(work, (error: unknown) => {
    assert.ok(isUserError(error), error instanceof Error ? error.stack : String(error));
    assert.match(error.message, pattern);
    return true;
  });
}

async function drain(records: AsyncIterable<unknown>): Promise<number> {
  let count = 0;
  for await (const _ of records) count++;
  return count;
}

test('a 20,000-deep .json dataset is a clean error; a deep JSONL row is a malformed row', async () => {
  const json = join(root, 'deep.json');
  await writeFile(json, '['.repeat(20_000) + ']'.repeat(20_000));
  await assertUserError(summarizeDataset(json), /deep\.json is not valid JSON: values are nested more than 256 levels/);
  const jsonl = join(root, 'deep.jsonl');
  await writeFile(jsonl, `{"text":"ok"}\n${'['.repeat(20_000)}${']'.repeat(20_000)}\n`);
  const summary = await summarizeDataset(jsonl);
  assert.equal(summary.rows, 1);
  assert.deepEqual(summary.firstMalformedLines, [2]);
});

test('a corrupt Parquet file is a dataset error naming the file, at every stage', async () => {
  const file = join(root, 'corrupt.parquet');
  // Magic numbers around a footer length that points before the start of the file.
  const bytes = Buffer.alloc(64, 7);
  bytes.write('PAR1', 0);
  bytes.writeUInt32LE(1_000_000, 56);
  bytes.write('PAR1', 60);
  await writeFile(file, bytes);
  await assertUserError(drain(readRecords(file, 'parquet')), /corrupt\.parquet is not a readable Parquet file \(reading the footer: /);
});

test('a missing file, a folder and a FIFO named like a dataset are refused before any read', async () => {
  await assertUserError(drain(readRecords(join(root, 'missing.jsonl'), 'jsonl')), /missing\.jsonl does not exist/);
  const fifo = join(root, 'pipe.jsonl');
  execFileSync('mkfifo', [fifo]);
  await assertUserError(drain(readRecords(fifo, 'jsonl')), /pipe\.jsonl is not a regular file/);
  await assertUserError(drain(readRecords(root, 'txt')), /is not a regular file/);
});

test('the sandboxed reader gives the same rows, and a reader that stalls is killed with the row named', async () => {
  const file = join(root, 'rows.jsonl');
  await writeFile(file, Array.from({ length: 600 }, (_, i) => JSON.stringify({ text: `row ${i}` })).join('\n'));
  assert.equal(await drain(sandboxedRecords(file, 'jsonl')), 600);
  const direct = await summarizeDataset(file);
  const sandboxed = await summarizeDataset(file, undefined, { sandboxed: true });
  assert.deepEqual(sandboxed, direct);
  // No worker answers within a millisecond (starting one takes longer), so this is a stall.
  const started = Date.now();
  await assertUserError(summarizeDataset(file, undefined, { sandboxed: true, stallMs: 1 }), /rows\.jsonl: reading took more than 0 s on row 1 and was stopped/);
  assert.ok(Date.now() - started < 2_000);
  // A user error inside the worker arrives as one.
  await assertUserError(drain(sandboxedRecords(join(root, 'gone.jsonl'), 'jsonl')), /gone\.jsonl does not exist/);
});
