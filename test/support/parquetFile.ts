/**
 * A small Parquet writer for tests: one string column, uncompressed PLAIN (or dictionary) pages,
 * written from the format's Thrift definitions (parquet.thrift) with the compact protocol. Every
 * size the file declares can be overridden, so tests can write files that lie about them.
 */

/** Thrift compact protocol field types. */
const I32 = 5;
const I64 = 6;
const BINARY = 8;
const LIST = 9;
const STRUCT = 12;

type Field = [id: number, type: number, value: unknown, elementType?: number];

class CompactWriter {
  private readonly bytes: number[] = [];

  varint(value: bigint): void {
    let v = value;
    while (v >= 0x80n) {
      this.bytes.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    this.bytes.push(Number(v));
  }

  zigzag(value: number | bigint): void {
    const v = BigInt(value);
    this.varint(v >= 0n ? v << 1n : ((-v) << 1n) - 1n);
  }

  struct(fields: Field[]): void {
    let last = 0;
    for (const [id, type, value, elementType] of fields) {
      if (value === undefined) continue;
      const delta = id - last;
      if (delta > 0 && delta <= 15) this.bytes.push((delta << 4) | type);
      else {
        this.bytes.push(type);
        this.zigzag(id);
      }
      last = id;
      this.value(type, value, elementType);
    }
    this.bytes.push(0);
  }

  private value(type: number, value: unknown, elementType?: number): void {
    if (type === I32 || type === I64) this.zigzag(value as number | bigint);
    else if (type === BINARY) {
      const data = typeof value === 'string' ? Buffer.from(value) : (value as Uint8Array);
      this.varint(BigInt(data.length));
      this.bytes.push(...data);
    } else if (type === STRUCT) this.struct(value as Field[]);
    else if (type === LIST) {
      const items = value as unknown[];
      if (items.length < 15) this.bytes.push((items.length << 4) | elementType!);
      else {
        this.bytes.push(0xf0 | elementType!);
        this.varint(BigInt(items.length));
      }
      for (const item of items) this.value(elementType!, item);
    } else throw new Error(`type ${type}`);
  }

  done(): Buffer {
    return Buffer.from(this.bytes);
  }
}

function thrift(fields: Field[]): Buffer {
  const writer = new CompactWriter();
  writer.struct(fields);
  return writer.done();
}

export interface ParquetPage {
  /** The page body as stored (PLAIN values, or levels and indices). */
  body: Uint8Array;
  numValues: number;
  /** parquet.thrift PageType: 0 DATA_PAGE, 2 DICTIONARY_PAGE. */
  type?: number;
  /** Encoding: 0 PLAIN, 8 RLE_DICTIONARY. */
  encoding?: number;
  /** Declared sizes, when they should lie. */
  uncompressedSize?: number;
  compressedSize?: number;
}

export interface ParquetOptions {
  column?: string;
  /** REQUIRED (0) or OPTIONAL (1). */
  repetition?: number;
  /** Declared row counts, when they should lie; default the page values. */
  numRows?: number;
  groupRows?: number;
  /** Declared sizes of the column chunk. */
  chunkCompressedSize?: number;
  chunkUncompressedSize?: number;
  chunkValues?: number;
}

/** PLAIN BYTE_ARRAY values: a 4-byte length before each. */
export function plainStrings(values: string[]): Buffer {
  return Buffer.concat(values.map((value) => {
    const data = Buffer.from(value);
    const length = Buffer.alloc(4);
    length.writeUInt32LE(data.length);
    return Buffer.concat([length, data]);
  }));
}

/** A file with one row group holding `pages` of one string column. */
export function parquetFile(pages: ParquetPage[], options: ParquetOptions = {}): Buffer {
  const column = options.column ?? 'text';
  const chunks: Buffer[] = [Buffer.from('PAR1')];
  let offset = 4;
  const firstOffset = offset;
  let dictionaryOffset: number | undefined;
  let dataOffset: number | undefined;
  let values = 0;
  for (const page of pages) {
    const type = page.type ?? 0;
    const header = thrift([
      [1, I32, type],
      [2, I32, page.uncompressedSize ?? page.body.length],
      [3, I32, page.compressedSize ?? page.body.length],
      type === 0 ? [5, STRUCT, [[1, I32, page.numValues], [2, I32, page.encoding ?? 0], [3, I32, 3], [4, I32, 3]]] : [5, STRUCT, undefined],
      type === 2 ? [7, STRUCT, [[1, I32, page.numValues], [2, I32, 0]]] : [7, STRUCT, undefined],
    ]);
    if (type === 2) dictionaryOffset ??= offset;
    else {
      dataOffset ??= offset;
      values += page.numValues;
    }
    chunks.push(header, Buffer.from(page.body));
    offset += header.length + page.body.length;
  }
  const chunkBytes = offset - firstOffset;
  const rows = options.groupRows ?? values;
  const metadata = thrift([
    [1, I32, 1],
    [2, LIST, [[[4, BINARY, 'schema'], [5, I32, 1]], [[1, I32, 6], [3, I32, options.repetition ?? 0], [4, BINARY, column], [6, I32, 0]]], STRUCT],
    [3, I64, options.numRows ?? rows],
    [4, LIST, [[
      [1, LIST, [[
        [2, I64, firstOffset],
        [3, STRUCT, [
          [1, I32, 6],
          [2, LIST, dictionaryOffset === undefined ? [0, 3] : [0, 3, 8], I32],
          [3, LIST, [column], BINARY],
          [4, I32, 0],
          [5, I64, options.chunkValues ?? values],
          [6, I64, options.chunkUncompressedSize ?? chunkBytes],
          [7, I64, options.chunkCompressedSize ?? chunkBytes],
          [9, I64, dataOffset ?? firstOffset],
          [11, I64, dictionaryOffset],
        ]],
      ]], STRUCT],
      [2, I64, chunkBytes],
      [3, I64, rows],
    ]], STRUCT],
  ]);
  const length = Buffer.alloc(4);
  length.writeUInt32LE(metadata.length);
  chunks.push(metadata, length, Buffer.from('PAR1'));
  return Buffer.concat(chunks);
}

/** A plain file of these rows in one page. */
export function parquetOfStrings(values: string[], options: ParquetOptions = {}): Buffer {
  return parquetFile([{ body: plainStrings(values), numValues: values.length }], options);
}

function varint(value: number): number[] {
  const bytes: number[] = [];
  let v = BigInt(value);
  while (v >= 0x80n) {
    bytes.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  bytes.push(Number(v));
  return bytes;
}

/**
 * 1.3 KB whose declared sizes are all small and true, but whose pages' definition levels are each
 * one RLE run of 2^31 - 1 values for a one-value page: hyparquet writes the run into a plain array,
 * which grows until V8 aborts the whole process ("invalid size error"), worker threads included.
 */
export function parquetWithRunawayRle(pages = 40): Buffer {
  const levels = Buffer.from([...varint((2 ** 31 - 1) * 2), 1]);
  const length = Buffer.alloc(4);
  length.writeUInt32LE(levels.length);
  const body = Buffer.concat([length, levels, plainStrings(['a'])]);
  return parquetFile(Array.from({ length: pages }, () => ({ body, numValues: 1 })), { repetition: 1 });
}
