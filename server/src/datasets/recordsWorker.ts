/**
 * The child-process side of `sandboxedRecords`: reads datasets with `readRecords` and hands the
 * rows over a batch per request. It is a process, not a worker thread, because some corrupt files
 * make V8 itself abort (a Parquet RLE run of 2^31 values grows an array past V8's size limit, a
 * fatal error that takes every thread of the process with it); here that costs only this process.
 * One process can read many files in turn (`open` starts the next one).
 */
import type { DatasetFormat } from '../../../common/protocol';
import { serializeError } from '../runtime/runtimeProtocol';
import { readRecords, type DatasetRecord } from './records';
import type { RecordsChildReply, RecordsChildRequest } from './sandboxedRecords';

const BATCH_RECORDS = 256;

let records: AsyncGenerator<DatasetRecord> | undefined;
const send = (reply: RecordsChildReply) => process.send!(reply);

process.on('message', async (request: RecordsChildRequest) => {
  if (request.type === 'open') {
    void records?.return(undefined);
    records = readRecords(request.file, request.format as DatasetFormat);
    return;
  }
  const batch: DatasetRecord[] = [];
  try {
    if (!records) throw new Error('no dataset is open');
    while (batch.length < BATCH_RECORDS) {
      const next = await records.next();
      if (next.done) {
        send({ type: 'batch', records: batch, done: true });
        return;
      }
      batch.push(next.value);
    }
    send({ type: 'batch', records: batch, done: false });
  } catch (error) {
    send({ type: 'error', error: serializeError(error) });
  }
});
// The parent went away (or closed us): nothing is left to read for.
process.on('disconnect', () => process.exit(0));
