import * as fs from 'node:fs';
import * as readline from 'node:readline';
import { Transform, type TransformCallback } from 'node:stream';
import type { DatasetFormat } from '../../../common/protocol';
import { parseBoundedJson } from '../boundedJson';
import { errorMessage, isUserError, UserError } from '../errors';
import { readRegularFile } from '../regularFile';
import { parseCsvRecords } from './csv';
import { checkParquetSizes } from './parquetBounds';

/**
 * One row of a dataset as read from disk: its parsed value, or why it could not be parsed.
 * `line` is 1-based for line-oriented formats (JSONL, CSV, text) and the element index + 1 for
 * JSON arrays and Parquet, so error messages can always point somewhere.
 */
export interface DatasetRecord {
  line: number;
  bytes: number;
  value?: unknown;
  error?: string;
}

/**
 * JSON datasets are parsed whole (the text, then its values: several times the bytes in heap); past
 * this size ask for JSONL, which streams.
 */
export const MAX_JSON_BYTES = 128 * 1024 * 1024;

/**
 * Longest line of a line-oriented dataset (JSONL, CSV, text). readline holds a line whole until its
 * newline, so a file without one (a binary blob named .txt, a 10 GB one-line JSON) would be read
 * into memory entire; a real row is kilobytes, a long document a few MB.
 */
export const MAX_LINE_BYTES = 64 * 1024 * 1024;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Streams the rows of a dataset file; memory stays flat for line-oriented formats. */
export async function* readRecords(file: string, format: DatasetFormat): AsyncGenerator<DatasetRecord> {
  await requireRegularFile(file);
  switch (format) {
    case 'jsonl':
      for await (const { line, text, bytes, error } of readLines(file)) {
        if (error) yield { line, bytes, error };
        else if (text.trim() === '') continue;
        else yield parseJsonLine(line, text, bytes);
      }
      return;
    case 'txt':
      for await (const { line, text, bytes, error } of readLines(file)) {
        if (error) yield { line, bytes, error };
        else if (text.trim() !== '') yield { line, bytes, value: text };
      }
      return;
    case 'csv':
      yield* parseCsvRecords(readLines(file), file, MAX_LINE_BYTES);
      return;
    case 'json':
      yield* readJsonArray(file);
      return;
    case 'parquet':
      yield* readParquet(file);
      return;
  }
}

function parseJsonLine(line: number, text: string, bytes: number): DatasetRecord {
  try {
    return { line, bytes, value: parseBoundedJson(text) };
  } catch (error) {
    return { line, bytes, error: `invalid JSON (${(error as Error).message})` };
  }
}

export interface TextLine {
  line: number;
  text: string;
  bytes: number;
  error?: string;
}

/** Lines of a file, each checked to be valid UTF-8 (a binary file fails on its first bad line). */
export async function* readLines(file: string, maxLineBytes = MAX_LINE_BYTES): AsyncGenerator<TextLine> {
  const stream = fs.createReadStream(file);
  const bytes = new LineBytes(file, maxLineBytes);
  // A read error (the file vanished) ends the lines as an error instead of going unheard.
  stream.on('error', (error) => bytes.destroy(error));
  // Split on raw bytes so that invalid UTF-8 is detected instead of silently replaced.
  const lines = readline.createInterface({ input: stream.pipe(bytes), crlfDelay: Infinity });
  let line = 0;
  try {
    for await (const encoded of lines) {
      line++;
      const raw = Buffer.from(encoded, 'latin1');
      try {
        yield { line, text: utf8.decode(raw), bytes: raw.length };
      } catch {
        yield { line, text: '', bytes: raw.length, error: 'not valid UTF-8 text (is this a binary file?)' };
      }
    }
  } finally {
    lines.close();
    stream.destroy();
  }
}

/**
 * Re-encodes bytes as latin1 so readline splits lines without decoding them as UTF-8, and stops at
 * a line longer than the limit before readline has buffered it.
 */
class LineBytes extends Transform {
  private line = 1;
  /** Bytes of the current line so far. */
  private lineBytes = 0;

  constructor(
    private readonly file: string,
    private readonly maxLineBytes: number,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    let start = 0;
    for (let newline = chunk.indexOf(10); newline >= 0; newline = chunk.indexOf(10, start)) {
      this.lineBytes += newline - start;
      if (this.lineBytes > this.maxLineBytes) return callback(this.tooLong());
      this.line++;
      this.lineBytes = 0;
      start = newline + 1;
    }
    this.lineBytes += chunk.length - start;
    if (this.lineBytes > this.maxLineBytes) return callback(this.tooLong());
    callback(null, chunk.toString('latin1'));
  }

  private tooLong(): UserError {
    return new UserError(`${this.file}: line ${this.line} is over ${sizeLimit(this.maxLineBytes)} long (is this a binary file, or JSON that should be one record per line?).`);
  }
}

/**
 * A missing file, a folder, a device or a FIFO named like a dataset is refused before any stream
 * is opened on it: a read stream on a FIFO blocks forever, and one on a missing file errors in a
 * way readline does not pass on, which left a request unanswered.
 */
async function requireRegularFile(file: string): Promise<void> {
  const stats = await fs.promises.stat(file).catch(() => undefined);
  if (!stats) throw new UserError(`${file} does not exist.`);
  if (!stats.isFile()) throw new UserError(`${file} is not a regular file (a folder, device or pipe), so it cannot be read as a dataset.`);
}

async function* readJsonArray(file: string): AsyncGenerator<DatasetRecord> {
  let buffer: Buffer;
  try {
    buffer = await readRegularFile(file, MAX_JSON_BYTES);
  } catch (error) {
    const tooBig = (error as NodeJS.ErrnoException).code === 'ETOOBIG';
    throw new UserError(tooBig ? `${file} is over ${MAX_JSON_BYTES / 2 ** 20} MB of JSON; convert it to JSONL (one record per line) so it can be streamed.` : `${file} cannot be read: ${errorMessage(error)}.`);
  }
  let text: string;
  try {
    text = utf8.decode(buffer);
  } catch {
    throw new UserError(`${file} is not valid UTF-8 text (is this a binary file?).`);
  }
  let parsed: unknown;
  try {
    parsed = parseBoundedJson(text);
  } catch (error) {
    throw new UserError(`${file} is not valid JSON: ${(error as Error).message}`);
  }
  const rows = Array.isArray(parsed)
    ? parsed
    : parsed && typeof parsed === 'object' && Array.isArray((parsed as { data?: unknown }).data)
      ? (parsed as { data: unknown[] }).data
      : undefined;
  if (!rows) throw new UserError(`${file}: expected a JSON array of records or an object with a "data" array.`);
  for (let i = 0; i < rows.length; i++) {
    yield { line: i + 1, bytes: Buffer.byteLength(JSON.stringify(rows[i]) ?? ''), value: rows[i] };
  }
}

/**
 * Every hyparquet call goes through this: the library throws TypeErrors, RangeErrors and its own
 * messages on corrupt pages, which are the file's fault and so become dataset errors naming it.
 */
async function parquetCall<T>(file: string, what: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (isUserError(error)) throw error;
    throw new UserError(`${file} is not a readable Parquet file (${what}: ${errorMessage(error)}).`);
  }
}

async function* readParquet(file: string): AsyncGenerator<DatasetRecord> {
  const { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } = await import('hyparquet');
  const buffer = await parquetCall(file, 'opening', () => asyncBufferFromFile(file));
  const metadata = await parquetCall(file, 'reading the footer', () => parquetMetadataAsync(buffer));
  await parquetCall(file, 'checking its declared sizes', () => checkParquetSizes(file, buffer, metadata));
  // Read a row group's worth at a time so memory follows the row group size, not the file size.
  let rowStart = 0;
  for (const [groupIndex, group] of metadata.row_groups.entries()) {
    const rowEnd = rowStart + Number(group.num_rows);
    const rows = await parquetCall(file, `row group ${groupIndex}`, () => parquetReadObjects({ file: buffer, metadata, rowStart, rowEnd }));
    for (let i = 0; i < rows.length; i++) {
      yield { line: rowStart + i + 1, bytes: Buffer.byteLength(JSON.stringify(rows[i], bigintToNumber) ?? ''), value: rows[i] };
    }
    rowStart = rowEnd;
  }
}

function bigintToNumber(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? Number(value) : value;
}

function sizeLimit(bytes: number): string {
  return bytes >= 2 ** 20 ? `${bytes / 2 ** 20} MB` : `${bytes.toLocaleString('en-US')} bytes`;
}
