import * as path from 'node:path';
import { DATASET_EXTENSIONS, type DatasetFormat } from '../../../common/protocol';
import { UserError } from '../errors';

const PICKLE_EXTENSIONS = new Set(['.bin', '.pt', '.pth', '.pkl', '.pickle']);

/** The dataset format of a file, from its extension; anything else is refused with the list we read. */
export function datasetFormatOf(file: string): DatasetFormat {
  const extension = path.extname(file).toLowerCase();
  const format = DATASET_EXTENSIONS[extension];
  if (format) return format;
  if (PICKLE_EXTENSIONS.has(extension)) {
    throw new UserError(
      `${path.basename(file)} is a pickle file. MoE Studio never loads pickle, because unpickling can run arbitrary code. ` +
        'Save the data as JSONL, JSON, CSV, Parquet or plain text.',
    );
  }
  throw new UserError(
    `${path.basename(file)}: unsupported dataset format "${extension || '(no extension)'}". ` +
      `Supported: ${Object.keys(DATASET_EXTENSIONS).join(', ')}.`,
  );
}
