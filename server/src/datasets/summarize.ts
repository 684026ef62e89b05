import * as fs from 'node:fs';
import * as path from 'node:path';
import type { DatasetSummary } from '../../../common/protocol';
import { CancelledError, UserError } from '../errors';
import { datasetFormatOf } from './format';
import { readRecords, type DatasetRecord } from './records';
import { sandboxedRecords } from './sandboxedRecords';

const MAX_REPORTED_MALFORMED = 5;
const HISTOGRAM_BINS = 12;

export interface Cancellation {
  readonly isCancellationRequested: boolean;
}

/**
 * Rows, bytes and a row-size histogram of a dataset file: the first thing a user sees of it. With
 * `sandboxed` (the language server) the file is read in a worker that is killed when it hangs.
 */
export async function summarizeDataset(file: string, cancel?: Cancellation, options: { sandboxed?: boolean; stallMs?: number } = {}): Promise<DatasetSummary> {
  const format = datasetFormatOf(file);
  const stat = await fs.promises.stat(file).catch(() => undefined);
  if (!stat?.isFile()) throw new UserError(`${file} does not exist or is not a file.`);

  const rowBytes: number[] = [];
  const firstMalformedLines: number[] = [];
  let malformedRows = 0;
  const records: AsyncGenerator<DatasetRecord> = options.sandboxed ? sandboxedRecords(file, format, { cancel, stallMs: options.stallMs }) : readRecords(file, format);
  for await (const record of records) {
    if (cancel?.isCancellationRequested) throw new CancelledError();
    if (record.error) {
      malformedRows++;
      if (firstMalformedLines.length < MAX_REPORTED_MALFORMED) firstMalformedLines.push(record.line);
      continue;
    }
    rowBytes.push(record.bytes);
  }
  return {
    uri: '',
    fileName: path.basename(file),
    format,
    bytes: stat.size,
    rows: rowBytes.length,
    malformedRows,
    firstMalformedLines,
    rowBytesHistogram: histogram(rowBytes, HISTOGRAM_BINS),
  };
}

/** Equal-width bins over [min, max]; a single bin when all rows have the same size. */
export function histogram(values: number[], bins: number): { edges: number[]; counts: number[] } {
  if (values.length === 0) return { edges: [0, 0], counts: [0] };
  let min = Infinity;
  let max = -Infinity;
  for (const value of values) {
    if (value < min) min = value;
    if (value > max) max = value;
  }
  if (min === max) return { edges: [min, max + 1], counts: [values.length] };
  const width = Math.ceil((max - min + 1) / bins);
  const edges = Array.from({ length: bins + 1 }, (_, i) => min + i * width);
  const counts = new Array<number>(bins).fill(0);
  for (const value of values) counts[Math.min(bins - 1, Math.floor((value - min) / width))]++;
  return { edges, counts };
}
