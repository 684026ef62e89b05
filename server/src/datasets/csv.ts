import { UserError } from '../errors';
import type { DatasetRecord, TextLine } from './records';

/**
 * RFC 4180 CSV: the first record is the header; fields may be quoted, quotes are doubled inside
 * quotes, and a quoted field may span lines. Each data record becomes an object keyed by header.
 * A record is at most `maxRecordBytes`: an unterminated quote early in a large file would otherwise
 * gather the whole rest of the file into one field.
 */
export async function* parseCsvRecords(lines: AsyncIterable<TextLine>, file: string, maxRecordBytes: number): AsyncGenerator<DatasetRecord> {
  let header: string[] | undefined;
  let fields: string[] = [];
  let field = '';
  let inQuotes = false;
  let startLine = 0;
  let bytes = 0;

  for await (const { line, text, bytes: lineBytes, error } of lines) {
    if (error) {
      yield { line, bytes: lineBytes, error };
      continue;
    }
    if (!inQuotes) {
      if (text.trim() === '') continue;
      startLine = line;
      bytes = 0;
    } else {
      field += '\n';
    }
    // With the newlines between the lines: a quote over millions of short lines counts them too.
    bytes += lineBytes + (inQuotes ? 1 : 0);
    if (bytes > maxRecordBytes) {
      const limit = maxRecordBytes >= 2 ** 20 ? `${Math.round(maxRecordBytes / 2 ** 20)} MB` : `${maxRecordBytes.toLocaleString('en-US')} bytes`;
      throw new UserError(`${file}: the record from line ${startLine} runs over ${limit} (a quote that is never closed?).`);
    }
    for (let i = 0; i < text.length; i++) {
      const ch = text[i];
      if (inQuotes) {
        if (ch === '"' && text[i + 1] === '"') {
          field += '"';
          i++;
        } else if (ch === '"') {
          inQuotes = false;
        } else {
          field += ch;
        }
      } else if (ch === '"' && field === '') {
        inQuotes = true;
      } else if (ch === ',') {
        fields.push(field);
        field = '';
      } else if (ch !== '\r') {
        field += ch;
      }
    }
    if (inQuotes) continue;
    fields.push(field);
    field = '';
    const record = fields;
    fields = [];
    if (!header) {
      header = record;
      continue;
    }
    if (record.length !== header.length) {
      yield { line: startLine, bytes, error: `expected ${header.length} fields, found ${record.length}` };
      continue;
    }
    yield { line: startLine, bytes, value: Object.fromEntries(header.map((name, i) => [name, record[i]])) };
  }
  if (inQuotes) yield { line: startLine, bytes, error: 'unterminated quoted field at end of file' };
}
