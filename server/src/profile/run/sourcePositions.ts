/**
 * Where a profiled token sits in the dataset file. Token records hold offsets in a row's *text* (the
 * string built by the FieldSpec); an editor needs columns in the raw line. For text files they are the
 * same; for a JSONL row read through one string field the text is a JSON string value, so decoded
 * characters map to raw columns through its escapes (`\n`, `\"`, `\u00e9`, surrogate pairs). Anything
 * else (pairs, chats, CSV) has no one-to-one mapping and gets the whole line.
 */
import type { DatasetFormat } from '../../../../common/protocol';
import type { FieldSpec } from '../types';

/** Maps [start, end) offsets of the row's text to [start, end) columns of its line (UTF-16 units). */
export interface RowColumns {
  /** True when offsets map to exact columns; false when every range is the whole line. */
  exact: boolean;
  /** The row's text when it could be recovered from the line (for hovers). */
  text?: string;
  columns(start: number, end: number): [number, number];
}

/** How offsets of a row's text map to columns of its raw line, for this format and field. */
export function rowColumns(line: string, format: DatasetFormat, field: FieldSpec): RowColumns {
  const wholeLine: RowColumns = { exact: false, columns: () => [0, line.length] };
  if (format === 'txt' && field.kind === 'string') {
    const clamp = (offset: number) => Math.max(0, Math.min(offset, line.length));
    return { exact: true, text: line, columns: (start, end) => [clamp(start), clamp(end)] };
  }
  if (format !== 'jsonl') return wholeLine;
  const value = field.kind === 'field' ? jsonFieldString(line, field.field) : field.kind === 'string' ? jsonStringAt(line, skipSpace(line, 0)) : undefined;
  if (!value) return wholeLine;
  const { text, columns } = value;
  const at = (offset: number) => columns[Math.max(0, Math.min(offset, text.length))];
  return { exact: true, text, columns: (start, end) => [at(start), at(end)] };
}

/** A JSON string decoded, with `columns[i]` the raw column of decoded unit i (`columns[length]` is the closing quote). */
export interface DecodedString {
  text: string;
  columns: Int32Array;
}

/** The string value of top-level key `field` in a one-line JSON object, or undefined when it is not a string. */
export function jsonFieldString(line: string, field: string): DecodedString | undefined {
  let i = skipSpace(line, 0);
  if (line[i] !== '{') return undefined;
  i = skipSpace(line, i + 1);
  while (i < line.length && line[i] !== '}') {
    const key = jsonStringAt(line, i);
    if (!key) return undefined;
    i = skipSpace(line, key.end + 1);
    if (line[i] !== ':') return undefined;
    i = skipSpace(line, i + 1);
    if (key.text === field) return line[i] === '"' ? jsonStringAt(line, i) : undefined;
    i = skipValue(line, i);
    if (i < 0) return undefined;
    i = skipSpace(line, i);
    if (line[i] === ',') i = skipSpace(line, i + 1);
  }
  return undefined;
}

/** Decodes the JSON string starting at the quote at `start`; `end` is the closing quote's column. */
function jsonStringAt(line: string, start: number): (DecodedString & { end: number }) | undefined {
  if (line[start] !== '"') return undefined;
  let text = '';
  const columns: number[] = [];
  let i = start + 1;
  while (i < line.length) {
    const char = line[i];
    if (char === '"') {
      columns.push(i);
      return { text, columns: Int32Array.from(columns), end: i };
    }
    columns.push(i);
    if (char !== '\\') {
      text += char;
      i++;
      continue;
    }
    const escape = line[i + 1];
    if (escape === 'u') {
      const code = Number.parseInt(line.slice(i + 2, i + 6), 16);
      if (Number.isNaN(code)) return undefined;
      text += String.fromCharCode(code);
      i += 6;
    } else {
      const decoded = ESCAPES[escape];
      if (decoded === undefined) return undefined;
      text += decoded;
      i += 2;
    }
  }
  return undefined;
}

const ESCAPES: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };

/** The column after the JSON value at `i`, or -1 when the line is not valid JSON there. */
function skipValue(line: string, i: number): number {
  if (line[i] === '"') {
    const string = jsonStringAt(line, i);
    return string ? string.end + 1 : -1;
  }
  let depth = 0;
  for (; i < line.length; i++) {
    const char = line[i];
    if (char === '"') {
      const string = jsonStringAt(line, i);
      if (!string) return -1;
      i = string.end;
    } else if (char === '{' || char === '[') depth++;
    else if (char === '}' || char === ']') {
      if (depth === 0) return i;
      depth--;
      if (depth === 0) return i + 1;
    } else if (char === ',' && depth === 0) return i;
  }
  return depth === 0 ? i : -1;
}

function skipSpace(line: string, i: number): number {
  while (i < line.length && (line[i] === ' ' || line[i] === '\t' || line[i] === '\r')) i++;
  return i;
}

/**
 * The 0-based document line of each dataset row, for line formats whose rows are the non-blank
 * lines (JSONL, text): the reading order of `readRecords`, malformed lines included.
 */
export function rowLines(lines: readonly string[]): number[] {
  const rows: number[] = [];
  lines.forEach((line, index) => {
    if (line.trim() !== '') rows.push(index);
  });
  return rows;
}
