/**
 * Fuzzing every dataset format through `summarizeDataset`, the first reader a dataset meets, and
 * Parquet through the reader process. Each format has one file, overwritten by each input.
 */
import fc from 'fast-check';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { RecordsReader } from '../../server/src/datasets/sandboxedRecords';
import { summarizeDataset } from '../../server/src/datasets/summarize';
import { damagedParquet, parquetLayouts, structuredFile } from './structuredParquet';
import { afterSurfaces, beforeSurfaces, FUZZ_TMP, expectCleanOutcome, fuzzSurface, hostileJson, jsonText, surface, utf8 } from './harness';

let root: string;
beforeSurfaces(() => {
  root = mkdtempSync(path.join(FUZZ_TMP, 'moe-fuzz-datasets-'));
});
afterSurfaces(() => rmSync(root, { recursive: true, force: true }));

async function summarize(extension: string, bytes: Uint8Array, sandboxed = false): Promise<void> {
  const file = path.join(root, `case${extension}`);
  writeFileSync(file, bytes);
  await expectCleanOutcome(file, () => summarizeDataset(file, undefined, { sandboxed, stallMs: 3_000 }));
}

const text = fc.string({ unit: 'binary', maxLength: 400 });
const lines = (line: fc.Arbitrary<string>) => fc.array(line, { maxLength: 20 }).map((all) => utf8(all.join('\n')));
const jsonLine = hostileJson.map((value) => { try { return JSON.stringify(value) ?? 'null'; } catch { return '['.repeat(30_000); } });

surface('jsonl', 'fuzz: JSONL datasets', async () => {
  await fuzzSurface('jsonl', fc.oneof(lines(fc.oneof(jsonLine, text)), fc.uint8Array({ maxLength: 1024 })), (bytes) => summarize('.jsonl', bytes));
});

surface('json', 'fuzz: JSON datasets', async () => {
  await fuzzSurface('json', jsonText(fc.oneof(fc.array(hostileJson, { maxLength: 5 }), fc.record({ data: hostileJson }), hostileJson)), (bytes) => summarize('.json', bytes));
});

surface('csv', 'fuzz: CSV datasets', async () => {
  const cell = fc.oneof(fc.string({ maxLength: 20 }), fc.constantFrom('"', '""', '"a,b"', '"unterminated', '\r', ',,,'));
  await fuzzSurface('csv', fc.oneof(lines(fc.array(cell, { maxLength: 6 }).map((cells) => cells.join(','))), fc.uint8Array({ maxLength: 1024 })), (bytes) => summarize('.csv', bytes));
});

surface('txt', 'fuzz: text datasets', async () => {
  await fuzzSurface('txt', fc.oneof(lines(text), fc.uint8Array({ maxLength: 1024 })), (bytes) => summarize('.txt', bytes));
});

/** Reads a Parquet file in `reader`'s process, replacing the reader first when an earlier input killed it. */
class ParquetReading {
  private reader = new RecordsReader();

  async records(file: string): Promise<unknown[]> {
    if (!this.reader.alive) this.reader = new RecordsReader();
    const values: unknown[] = [];
    for await (const record of this.reader.read(file, 'parquet', { stallMs: 3_000 })) values.push(record.error ?? record.value);
    return values;
  }

  close(): void {
    this.reader.close();
  }
}

/**
 * Parquet: random pages and footers between the magic numbers, read in the reader process the
 * language server uses (a corrupt page can make the decoder loop, or V8 abort). One reader process
 * serves input after input, as in the server, and a fresh one replaces it when an input kills it:
 * starting a process per input made this surface a hundred times slower than the others.
 */
surface('parquet', 'fuzz: Parquet datasets', async () => {
  const footer = fc.tuple(fc.uint8Array({ maxLength: 600 }), fc.uint8Array({ maxLength: 300 }), fc.option(fc.nat(2000))).map(([body, meta, claimed]) => {
    const bytes = new Uint8Array(4 + body.length + meta.length + 8);
    bytes.set(utf8('PAR1'), 0);
    bytes.set(body, 4);
    bytes.set(meta, 4 + body.length);
    new DataView(bytes.buffer).setUint32(bytes.length - 8, claimed ?? meta.length, true);
    bytes.set(utf8('PAR1'), bytes.length - 4);
    return bytes;
  });
  const reading = new ParquetReading();
  const file = path.join(root, 'case.parquet');
  try {
    await fuzzSurface('parquet', footer, async (bytes) => {
      writeFileSync(file, bytes);
      await expectCleanOutcome(file, () => reading.records(file));
    });
  } finally {
    reading.close();
  }
});

/**
 * Structured Parquet: real files (test/support/parquetFile.ts) of generated rows, page sizes and
 * encodings, with bytes overwritten inside the page headers and bodies only, so the footer parses
 * and the page decoders meet the damage; random bytes seldom get past the footer. Read through the
 * same reader process as the Parquet surface, with the same oracle.
 */
surface('parquet-structured', 'fuzz: structured Parquet files with damaged pages', async () => {
  const reading = new ParquetReading();
  const file = path.join(root, 'structured.parquet');
  try {
    // The generator makes files the reader accepts, row for row, so the damage below is the only thing wrong.
    for (const layout of fc.sample(parquetLayouts, { numRuns: 20, seed: 15 })) {
      writeFileSync(file, structuredFile(layout));
      assert.deepEqual(await reading.records(file), layout.rows.map((row) => ({ text: row })));
    }
    await fuzzSurface('parquet-structured', damagedParquet, async (bytes) => {
      writeFileSync(file, bytes);
      await expectCleanOutcome(file, () => reading.records(file));
    });
  } finally {
    reading.close();
  }
});
