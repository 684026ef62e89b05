/**
 * The worker side of `sandboxedRecords`: reads a dataset with `readRecords` and hands the rows over
 * a batch per request, so the reading (hyparquet's page decoders, JSON.parse of huge rows) can be
 * killed by the main thread when it stops making progress.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { DatasetFormat } from '../../../common/protocol';
import { serializeError } from '../runtime/runtimeProtocol';
import { readRecords, type DatasetRecord } from './records';
import type { RecordsWorkerReply } from './sandboxedRecords';

const BATCH_RECORDS = 256;

const { file, format } = workerData as { file: string; format: DatasetFormat };
const records = readRecords(file, format);
const port = parentPort!;

port.on('message', async () => {
  const batch: DatasetRecord[] = [];
  try {
    while (batch.length < BATCH_RECORDS) {
      const next = await records.next();
      if (next.done) {
        port.postMessage({ type: 'batch', records: batch, done: true } satisfies RecordsWorkerReply);
        return;
      }
      batch.push(next.value);
    }
    port.postMessage({ type: 'batch', records: batch, done: false } satisfies RecordsWorkerReply);
  } catch (error) {
    port.postMessage({ type: 'error', error: serializeError(error) } satisfies RecordsWorkerReply);
  }
});
