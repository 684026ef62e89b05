/**
 * Every size a Parquet file declares, checked before hyparquet allocates for it. The library trusts
 * the file: a page header's `uncompressed_page_size` becomes `new Uint8Array(n)`, its `num_values`
 * `new Array(n)`, a column chunk's byte range one read into memory. So the footer's row groups and
 * column chunks are checked against the file, and each chunk's page headers are walked (a small
 * read per page, not the pages themselves) and checked against the limits below. What a page's
 * body does once decoded (an RLE run of 2^31 values) is not a declared size; the reader process
 * (`sandboxedRecords`) is what stops that.
 */
import type { AsyncBuffer, FileMetaData } from 'hyparquet';
import { parquetHeader } from 'hyparquet/src/column.js';
import { UserError } from '../errors';

/** Largest page, decoded. Writers cut pages at about 1 MB; 256 MB leaves room for any real one. */
export const MAX_PAGE_BYTES = 256 * 2 ** 20;
/** Most values in one page (pyarrow writes at most 20,000 rows a page by default; 2^24 is far above any writer). */
export const MAX_PAGE_VALUES = 2 ** 24;
/** Largest row group, stored or decoded: a row group is read into memory whole. */
export const MAX_ROW_GROUP_BYTES = 2 ** 30;
/** A page header is tens of bytes; its optional statistics can hold a long min/max string. */
const FIRST_HEADER_WINDOW = 64 * 1024;
const MAX_HEADER_WINDOW = 16 * 2 ** 20;

export async function checkParquetSizes(file: string, buffer: AsyncBuffer, metadata: FileMetaData): Promise<void> {
  const fail = (problem: string): never => {
    throw new UserError(`${file} is not a readable Parquet file (${problem}).`);
  };
  const dataEnd = buffer.byteLength - 8 - metadata.metadata_length;
  for (const [groupIndex, group] of metadata.row_groups.entries()) {
    const rows = Number(group.num_rows);
    if (!(Number.isSafeInteger(rows) && rows >= 0)) fail(`row group ${groupIndex} declares ${group.num_rows} rows`);
    let storedBytes = 0;
    let decodedBytes = 0;
    for (const [columnIndex, column] of group.columns.entries()) {
      const where = `row group ${groupIndex}, column ${columnIndex}`;
      const meta = column.meta_data;
      if (!meta) fail(`${where} has no column metadata`);
      const start = Number(meta!.dictionary_page_offset || meta!.data_page_offset);
      const size = Number(meta!.total_compressed_size);
      if (!(Number.isSafeInteger(start) && Number.isSafeInteger(size) && start >= 4 && size >= 0 && start + size <= dataEnd)) {
        fail(`${where} declares bytes ${start}..${start + size}, outside the ${dataEnd} bytes of data in the file`);
      }
      storedBytes += size;
      if (storedBytes > MAX_ROW_GROUP_BYTES) fail(`row group ${groupIndex} declares over ${MAX_ROW_GROUP_BYTES / 2 ** 20} MB of column data; MoE Studio reads a row group at a time, so write smaller row groups`);
      decodedBytes += await checkPages(buffer, start, start + size, Number(meta!.num_values), (problem) => fail(`${where}: ${problem}`));
      if (decodedBytes > MAX_ROW_GROUP_BYTES) fail(`row group ${groupIndex} declares over ${MAX_ROW_GROUP_BYTES / 2 ** 20} MB of decoded pages; write smaller row groups`);
    }
  }
}

/** Walks one column chunk's page headers; returns the decoded bytes they declare. */
async function checkPages(buffer: AsyncBuffer, start: number, end: number, chunkValues: number, fail: (problem: string) => never): Promise<number> {
  let offset = start;
  let values = 0;
  let decoded = 0;
  // Readers stop once they have the chunk's values; bytes after that are not pages.
  while (offset < end && !(Number.isSafeInteger(chunkValues) && chunkValues >= 0 && values >= chunkValues)) {
    const { header, headerBytes } = await readPageHeader(buffer, offset, end, fail);
    const { compressed_page_size: stored, uncompressed_page_size: size } = header;
    if (!(Number.isInteger(stored) && stored >= 0 && offset + headerBytes + stored <= end)) fail(`the page at byte ${offset} declares ${stored} bytes, past the end of its column chunk`);
    if (!(Number.isInteger(size) && size >= 0 && size <= MAX_PAGE_BYTES)) fail(`the page at byte ${offset} declares ${size} decoded bytes; the limit is ${MAX_PAGE_BYTES / 2 ** 20} MB`);
    const pageValues = header.data_page_header?.num_values ?? header.data_page_header_v2?.num_values ?? header.dictionary_page_header?.num_values ?? 0;
    if (!(Number.isInteger(pageValues) && pageValues >= 0 && pageValues <= MAX_PAGE_VALUES)) fail(`the page at byte ${offset} declares ${pageValues} values; the limit is ${MAX_PAGE_VALUES}`);
    const v2 = header.data_page_header_v2;
    if (v2) {
      const levels = v2.definition_levels_byte_length + v2.repetition_levels_byte_length;
      if (!(Number.isInteger(levels) && levels >= 0 && levels <= stored && levels <= size)) fail(`the page at byte ${offset} declares ${levels} bytes of levels in a ${stored}-byte page`);
      if (!(Number.isInteger(v2.num_rows) && v2.num_rows >= 0 && v2.num_rows <= MAX_PAGE_VALUES)) fail(`the page at byte ${offset} declares ${v2.num_rows} rows`);
    }
    if (header.type !== 'DICTIONARY_PAGE') values += pageValues;
    decoded += size;
    offset += headerBytes + stored;
  }
  return decoded;
}

async function readPageHeader(buffer: AsyncBuffer, offset: number, end: number, fail: (problem: string) => never): Promise<{ header: ReturnType<typeof parquetHeader>; headerBytes: number }> {
  for (let window = FIRST_HEADER_WINDOW; ; window *= 16) {
    const length = Math.min(window, end - offset);
    const bytes = await buffer.slice(offset, offset + length);
    const reader = { view: new DataView(bytes), offset: 0 };
    try {
      return { header: parquetHeader(reader), headerBytes: reader.offset };
    } catch (error) {
      // Ran off the window: try a larger one, unless the chunk ends first.
      if (length < window || window >= MAX_HEADER_WINDOW) fail(`the page header at byte ${offset} is not readable (${(error as Error).message})`);
    }
  }
}
