/** Fuzzing every dataset format through `summarizeDataset`, the first reader a dataset meets. */
import fc from 'fast-check';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { RecordsReader } from '../../server/src/datasets/sandboxedRecords';
import { summarizeDataset } from '../../server/src/datasets/summarize';
import { expectCleanOutcome, fuzzSurface, hostileJson, jsonText, utf8 } from './harness';

let root: string;
before(() => {
  root = mkdtempSync(path.join(tmpdir(), 'moe-fuzz-datasets-'));
});
after(() => rmSync(root, { recursive: true, force: true }));

let files = 0;
async function summarize(extension: string, bytes: Uint8Array, sandboxed = false): Promise<void> {
  const file = path.join(root, `case-${files++}${extension}`);
  writeFileSync(file, bytes);
  await expectCleanOutcome(file, () => summarizeDataset(file, undefined, { sandboxed, stallMs: 3_000 }));
  rmSync(file, { force: true });
}

const text = fc.string({ unit: 'binary', maxLength: 400 });
const lines = (line: fc.Arbitrary<string>) => fc.array(line, { maxLength: 20 }).map((all) => utf8(all.join('\n')));
const jsonLine = hostileJson.map((value) => { try { return JSON.stringify(value) ?? 'null'; } catch { return '['.repeat(30_000); } });

test('fuzz: JSONL datasets', async () => {
  await fuzzSurface('jsonl', fc.oneof(lines(fc.oneof(jsonLine, text)), fc.uint8Array({ maxLength: 1024 })), (bytes) => summarize('.jsonl', bytes));
});

test('fuzz: JSON datasets', async () => {
  await fuzzSurface('json', jsonText(fc.oneof(fc.array(hostileJson, { maxLength: 5 }), fc.record({ data: hostileJson }), hostileJson)), (bytes) => summarize('.json', bytes));
});

test('fuzz: CSV datasets', async () => {
  const cell = fc.oneof(fc.string({ maxLength: 20 }), fc.constantFrom('"', '""', '"a,b"', '"unterminated', '\r', ',,,'));
  await fuzzSurface('csv', fc.oneof(lines(fc.array(cell, { maxLength: 6 }).map((cells) => cells.join(','))), fc.uint8Array({ maxLength: 1024 })), (bytes) => summarize('.csv', bytes));
});

test('fuzz: text datasets', async () => {
  await fuzzSurface('txt', fc.oneof(lines(text), fc.uint8Array({ maxLength: 1024 })), (bytes) => summarize('.txt', bytes));
});

/**
 * Parquet: random pages and footers between the magic numbers, read in the reader process the
 * language server uses (a corrupt page can make the decoder loop, or V8 abort). One reader process
 * serves input after input, as in the server, and a fresh one replaces it when an input kills it:
 * starting a process per input made this surface a hundred times slower than the others.
 */
test('fuzz: Parquet datasets', async () => {
  const footer = fc.tuple(fc.uint8Array({ maxLength: 600 }), fc.uint8Array({ maxLength: 300 }), fc.option(fc.nat(2000))).map(([body, meta, claimed]) => {
    const bytes = new Uint8Array(4 + body.length + meta.length + 8);
    bytes.set(utf8('PAR1'), 0);
    bytes.set(body, 4);
    bytes.set(meta, 4 + body.length);
    new DataView(bytes.buffer).setUint32(bytes.length - 8, claimed ?? meta.length, true);
    bytes.set(utf8('PAR1'), bytes.length - 4);
    return bytes;
  });
  let reader = new RecordsReader();
  try {
    await fuzzSurface('parquet', footer, async (bytes) => {
      if (!reader.alive) reader = new RecordsReader();
      const file = path.join(root, `case-${files++}.parquet`);
      writeFileSync(file, bytes);
      await expectCleanOutcome(file, async () => {
        for await (const _ of reader.read(file, 'parquet', { stallMs: 3_000 }));
      });
      rmSync(file, { force: true });
    });
  } finally {
    reader.close();
  }
});
