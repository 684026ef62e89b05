/**
 * Real Parquet files for the structured Parquet surface, built with test/support/parquetFile.ts from
 * generated rows and page settings: one string column, REQUIRED or OPTIONAL (definition levels),
 * PLAIN or dictionary-encoded (RLE_DICTIONARY indices), split into pages of 1-16 rows.
 */
import fc from 'fast-check';
import { parquetFile, plainStrings, type ParquetPage } from '../support/parquetFile';

/** A Parquet file's rows as written: a string or null (a missing value of an OPTIONAL column) each. */
export interface ParquetLayout {
  rows: (string | null)[];
  /** Rows per data page; the rest go to the last page. */
  pageRows: number;
  dictionary: boolean;
  optional: boolean;
}

/** An RLE/bit-packed hybrid of `values` as RLE runs only, each value in `width` bits (whole bytes). */
function rleRuns(values: number[], width: number): Buffer {
  const bytes: number[] = [];
  const valueBytes = Math.ceil(width / 8);
  for (let i = 0; i < values.length; ) {
    let run = 1;
    while (i + run < values.length && values[i + run] === values[i]) run++;
    for (let header = run << 1; ; header >>>= 7) {
      if (header < 0x80) {
        bytes.push(header);
        break;
      }
      bytes.push((header & 0x7f) | 0x80);
    }
    for (let b = 0; b < valueBytes; b++) bytes.push((values[i] >>> (8 * b)) & 0xff);
    i += run;
  }
  return Buffer.from(bytes);
}

/** The pages of a real file with these rows: PLAIN or dictionary-encoded, REQUIRED or OPTIONAL. */
export function parquetPages(layout: ParquetLayout): ParquetPage[] {
  const { rows, dictionary, optional } = layout;
  const pages: ParquetPage[] = [];
  const dictionaryValues = [...new Set(rows.filter((row): row is string => row !== null))];
  if (dictionary) pages.push({ type: 2, body: plainStrings(dictionaryValues), numValues: dictionaryValues.length });
  for (let start = 0; start < rows.length || pages.length === (dictionary ? 1 : 0); start += layout.pageRows) {
    const slice = rows.slice(start, start + layout.pageRows);
    const present = slice.filter((row): row is string => row !== null);
    const parts: Buffer[] = [];
    if (optional) {
      const levels = rleRuns(slice.map((row) => (row === null ? 0 : 1)), 1);
      const length = Buffer.alloc(4);
      length.writeUInt32LE(levels.length);
      parts.push(length, levels);
    }
    if (dictionary) {
      const width = Math.max(1, Math.ceil(Math.log2(Math.max(2, dictionaryValues.length))));
      parts.push(Buffer.from([width]), rleRuns(present.map((value) => dictionaryValues.indexOf(value)), width));
    } else parts.push(plainStrings(present));
    pages.push({ body: Buffer.concat(parts), numValues: slice.length, encoding: dictionary ? 8 : 0 });
    if (rows.length === 0) break;
  }
  return pages;
}

export const parquetLayouts: fc.Arbitrary<ParquetLayout> = fc.record({
  rows: fc.array(fc.option(fc.string({ maxLength: 12 }), { freq: 4 }), { maxLength: 40 }),
  pageRows: fc.integer({ min: 1, max: 16 }),
  dictionary: fc.boolean(),
  optional: fc.boolean(),
}).map((layout) => (layout.optional ? layout : { ...layout, rows: layout.rows.map((row) => row ?? '') }));

export function structuredFile(layout: ParquetLayout): Buffer {
  return parquetFile(parquetPages(layout), { repetition: layout.optional ? 1 : 0 });
}

/** Where the page headers and bodies lie: after the leading magic, before the footer. */
function pageRange(file: Buffer): { start: number; end: number } {
  return { start: 4, end: file.length - 8 - file.readUInt32LE(file.length - 8) };
}

/** A structured file with 1-6 bytes inside its pages overwritten, or one bit of each flipped. */
export const damagedParquet: fc.Arbitrary<Uint8Array> = fc.tuple(parquetLayouts, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.boolean()), { minLength: 1, maxLength: 6 })).map(([layout, edits]) => {
  const bytes = structuredFile(layout);
  const { start, end } = pageRange(bytes);
  // A flipped bit turns a size or count into a nearby wrong one; an overwritten byte, into any.
  for (const [at, value, flip] of edits) {
    const index = start + (at % Math.max(1, end - start));
    bytes[index] = flip ? bytes[index] ^ (1 << (value & 7)) : value;
  }
  return new Uint8Array(bytes);
});
