import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker, type WorkerOptions } from 'node:worker_threads';
import type { DatasetFormat } from '../../../common/protocol';
import { CancelledError, UserError } from '../errors';
import { deserializeError, type SerializedError } from '../runtime/runtimeProtocol';
import type { Cancellation } from './summarize';
import type { DatasetRecord } from './records';

export type RecordsWorkerReply = { type: 'batch'; records: DatasetRecord[]; done: boolean } | { type: 'error'; error: SerializedError };

/**
 * A batch of 256 rows takes milliseconds to read; a reader that spends this long on one is stuck
 * (a corrupt Parquet page whose RLE run never ends was one) and is killed.
 */
export const DEFAULT_STALL_MS = 20_000;

function workerScript(): { script: string; options: WorkerOptions } {
  const bundled = path.join(__dirname, 'recordsWorker.js');
  if (fs.existsSync(bundled)) return { script: bundled, options: {} };
  const source = path.join(__dirname, 'recordsWorker.ts');
  return { script: `require('tsx/cjs'); require(${JSON.stringify(source)});`, options: { eval: true } };
}

/**
 * `readRecords` run in a worker thread, for the language server: a file that hangs or crashes the
 * reader costs a terminated worker and a clear error, never the server's thread. Batches are pulled
 * one at a time, so memory stays one batch whatever the file's size.
 */
export async function* sandboxedRecords(
  file: string,
  format: DatasetFormat,
  options: { stallMs?: number; cancel?: Cancellation } = {},
): AsyncGenerator<DatasetRecord> {
  const stallMs = options.stallMs ?? DEFAULT_STALL_MS;
  const { script, options: workerOptions } = workerScript();
  const worker = new Worker(script, { ...workerOptions, workerData: { file, format } });
  worker.unref();
  let rowsRead = 0;
  const nextBatch = () =>
    new Promise<{ records: DatasetRecord[]; done: boolean }>((resolve, reject) => {
      const timer = setTimeout(() => {
        cleanup();
        reject(new UserError(`${file}: reading took more than ${Math.round(stallMs / 1000)} s on row ${rowsRead + 1} and was stopped (a corrupt or hostile file?).`));
      }, stallMs);
      const onMessage = (reply: RecordsWorkerReply) => {
        cleanup();
        if (reply.type === 'error') reject(deserializeError(reply.error));
        else resolve(reply);
      };
      const onError = (error: Error) => {
        cleanup();
        reject(new UserError(`${file} could not be read: ${error.message}`));
      };
      const onExit = (code: number) => {
        cleanup();
        reject(new UserError(`${file} could not be read: the reader stopped (exit code ${code}).`));
      };
      const cleanup = () => {
        clearTimeout(timer);
        worker.off('message', onMessage).off('error', onError).off('exit', onExit);
      };
      worker.on('message', onMessage).on('error', onError).on('exit', onExit);
      worker.postMessage('next');
    });
  try {
    for (;;) {
      if (options.cancel?.isCancellationRequested) throw new CancelledError();
      const { records, done } = await nextBatch();
      for (const record of records) {
        rowsRead++;
        yield record;
      }
      if (done) return;
    }
  } finally {
    await worker.terminate();
  }
}
