import type { DatasetRecord, TextLine } from './records';

/**
 * RFC 4180 CSV: the first record is the header; fields may be quoted, quotes are doubled inside
 * quotes, and a quoted field may span lines. Each data record becomes an object keyed by header.
 */
export async function* parseCsvRecords(lines: AsyncIterable<TextLine>): AsyncGenerator<DatasetRecord> {
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
    bytes += lineBytes;
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
