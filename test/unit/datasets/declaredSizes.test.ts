/**
 * Every size a dataset file declares is checked before anything is allocated for it (issue #15):
 * Parquet row groups, column chunks, pages and dictionaries; line lengths of line-oriented formats;
 * a quoted CSV field that never closes; the size of a whole-file JSON dataset. Files are written by
 * test/support/parquetFile.ts, so the good ones are checked against the rows written into them.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { parseCsvRecords } from '../../../server/src/datasets/csv';
import { MAX_PAGE_BYTES, MAX_PAGE_VALUES } from '../../../server/src/datasets/parquetBounds';
import { MAX_JSON_BYTES, readLines, readRecords } from '../../../server/src/datasets/records';
import { sandboxedRecords } from '../../../server/src/datasets/sandboxedRecords';
import { isUserError } from '../../../server/src/errors';
import { parquetFile, parquetOfStrings, parquetWithRunawayRle, plainStrings } from '../../support/parquetFile';

let root: string;
let counter = 0;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'moe-declared-sizes-'));
});
after(() => rm(root, { recursive: true, force: true }));

async function fileWith(bytes: Uint8Array | string, extension: string): Promise<string> {
  const file = join(root, `case-${counter++}${extension}`);
  await writeFile(file, bytes);
  return file;
}

async function values(records: AsyncIterable<{ value?: unknown; error?: string }>): Promise<unknown[]> {
  const all: unknown[] = [];
  for await (const record of records) all.push(record.error ?? record.value);
  return all;
}

async function refused(work: Promise<unknown>, pattern: RegExp, withinMs = 2_000): Promise<void> {
  const started = performance.now();
  await assert.rejects(work, (error: unknown) => {
    assert.ok(isUserError(error), error instanceof Error ? error.stack : String(error));
    assert.match(error.message, pattern);
    return true;
  });
  assert.ok(performance.now() - started < withinMs, `took ${Math.round(performance.now() - started)} ms`);
}

const rows = ['the first row', 'zweite Zeile, café', ''];

test('a Parquet file that tells the truth reads back the rows written', async () => {
  assert.deepEqual(await values(readRecords(await fileWith(parquetOfStrings(rows), '.parquet'), 'parquet')), rows.map((text) => ({ text })));
  // Several pages, and a dictionary-encoded page whose indices are one RLE run.
  const dictionary = { type: 2, body: plainStrings(['x', 'y']), numValues: 2 };
  const indices = { body: Buffer.from([1, 3 << 1, 1]), numValues: 3, encoding: 8 };
  assert.deepEqual(await values(readRecords(await fileWith(parquetFile([dictionary, indices, { body: plainStrings(['z']), numValues: 1 }]), '.parquet'), 'parquet')), ['y', 'y', 'y', 'z'].map((text) => ({ text })));
});

test('Parquet sizes that lie are refused before they are allocated', async () => {
  const page = { body: plainStrings(rows), numValues: rows.length };
  const parquet = async (bytes: Buffer) => values(readRecords(await fileWith(bytes, '.parquet'), 'parquet'));
  await refused(parquet(parquetFile([{ ...page, uncompressedSize: 2 ** 31 - 1 }])), /is not a readable Parquet file \(row group 0, column 0: the page at byte 4 declares 2147483647 decoded bytes; the limit is 256 MB\)/);
  await refused(parquet(parquetFile([{ ...page, numValues: MAX_PAGE_VALUES + 1 }])), new RegExp(`the page at byte 4 declares ${MAX_PAGE_VALUES + 1} values`));
  await refused(parquet(parquetFile([{ type: 2, body: plainStrings(['x']), numValues: 2 ** 30 }, page])), /the page at byte 4 declares 1073741824 values/);
  await refused(parquet(parquetFile([{ ...page, compressedSize: 10_000 }])), /the page at byte 4 declares 10000 bytes, past the end of its column chunk/);
  await refused(parquet(parquetFile([page], { chunkCompressedSize: 2 ** 40 })), /row group 0, column 0 declares bytes 4\.\.1099511627780, outside the \d+ bytes of data in the file/);
  await refused(parquet(parquetFile([page], { groupRows: -5 })), /row group 0 declares -5 rows/);
  // Five pages that each stay under the page limit but together declare more than a row group may hold.
  const big = { ...page, uncompressedSize: MAX_PAGE_BYTES };
  await refused(parquet(parquetFile([big, big, big, big, big], { chunkValues: 5 * rows.length })), /row group 0 declares over 1024 MB of decoded pages/);
});

test('a Parquet file whose RLE runs abort V8 costs the reader process, with a message naming the file', async () => {
  const file = await fileWith(parquetWithRunawayRle(), '.parquet');
  await refused(values(sandboxedRecords(file, 'parquet')), /case-\d+\.parquet could not be read: the reader stopped \((signal \w+|exit code \d+)(: Fatal JavaScript invalid size error \d+|: [^;]*heap out of memory)?/, 60_000);
  // This process is alive to say so, and the next read gets a fresh reader.
  assert.deepEqual(await values(sandboxedRecords(await fileWith(parquetOfStrings(rows), '.parquet'), 'parquet')), rows.map((text) => ({ text })));
});

test('a line longer than the limit stops the read at that line, before it is buffered', async () => {
  const file = await fileWith(`short\nline\n${'x'.repeat(5_000)}\nlast\n`, '.txt');
  const lines: number[] = [];
  await refused((async () => { for await (const line of readLines(file, 4_096)) lines.push(line.line); })(), /case-\d+\.txt: line 3 is over 4,096 bytes long/);
  assert.ok(!lines.includes(3));
  // Within the limit, the same file reads whole.
  const all: number[] = [];
  for await (const line of readLines(file, 5_000)) all.push(line.bytes);
  assert.deepEqual(all, [5, 4, 5_000, 4]);
});

test('a CSV quote that never closes is refused once the record passes the limit', async () => {
  // After an open quote, every later line would go into one field: the whole rest of the file.
  const file = await fileWith(`text\nfirst\n"open\n${'abc\n'.repeat(3_000)}`, '.csv');
  await refused(values(parseCsvRecords(readLines(file), file, 10_000)), /case-\d+\.csv: the record from line 3 runs over 10,000 bytes \(a quote that is never closed\?\)/);
  // The same record within the limit is read to the end of the file and reported as unterminated.
  assert.deepEqual(await values(parseCsvRecords(readLines(file), file, 20_000)), [{ text: 'first' }, 'unterminated quoted field at end of file']);
});

test('a whole-file JSON dataset over the limit is refused by its size, unread', async () => {
  const file = await fileWith('[', '.json');
  await truncate(file, MAX_JSON_BYTES + 1);
  await refused(values(readRecords(file, 'json')), /is over 128 MB of JSON; convert it to JSONL/);
});
