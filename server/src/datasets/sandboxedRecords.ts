import { fork, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { DatasetFormat } from '../../../common/protocol';
import { CancelledError, UserError } from '../errors';
import { deserializeError, type SerializedError } from '../runtime/runtimeProtocol';
import type { Cancellation } from './summarize';
import type { DatasetRecord } from './records';

export type RecordsChildRequest = { type: 'open'; file: string; format: DatasetFormat } | { type: 'next' };
export type RecordsChildReply = { type: 'batch'; records: DatasetRecord[]; done: boolean } | { type: 'error'; error: SerializedError };

/**
 * A batch of 256 rows takes milliseconds to read; a reader that spends this long on one is stuck
 * (a corrupt Parquet page whose RLE runs are billions long was one) and is killed.
 */
export const DEFAULT_STALL_MS = 20_000;

/**
 * The reader's heap. Rows are read a batch at a time and a JSON dataset is at most 128 MB of text,
 * so real files need far less; a file that makes the reader grow past this kills only the reader.
 */
const READER_HEAP_MB = 2048;

function childScript(): { script: string; execArgv: string[] } {
  const bundled = path.join(__dirname, 'recordsWorker.js');
  const heap = `--max-old-space-size=${READER_HEAP_MB}`;
  if (fs.existsSync(bundled)) return { script: bundled, execArgv: [heap] };
  return { script: path.join(__dirname, 'recordsWorker.ts'), execArgv: [heap, '--import', 'tsx'] };
}

/**
 * A reader process: `readRecords` in a child process, for the language server and every stage that
 * reads a user's dataset (profiling, evaluation, calibration). A file that hangs the reader, grows it
 * without bound or makes V8 abort costs a killed child and a clear error, never the server. Batches
 * are pulled one at a time, so memory stays one batch whatever the file's size. One file is read at
 * a time; once the child has died, `alive` is false and a new reader is needed.
 */
export class RecordsReader {
  private readonly child: ChildProcess;
  private exit?: string;
  /** The end of the child's stderr: V8's line about why it aborted, when it did. */
  private stderr = '';
  private busy = false;

  constructor() {
    const { script, execArgv } = childScript();
    this.child = fork(script, [], { execArgv, serialization: 'advanced', stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    this.child.stderr!.on('data', (chunk: Buffer) => {
      this.stderr = (this.stderr + chunk.toString('utf8')).slice(-4096);
    });
    this.child.on('exit', (code, signal) => {
      this.exit = signal ? `signal ${signal}` : `exit code ${code}`;
    });
    // A failed spawn is reported by the next read; it must not be an unhandled 'error'.
    this.child.on('error', (error) => {
      this.exit ??= error.message;
    });
    this.idle();
  }

  get alive(): boolean {
    return this.exit === undefined;
  }

  async *read(file: string, format: DatasetFormat, options: { stallMs?: number; cancel?: Cancellation } = {}): AsyncGenerator<DatasetRecord> {
    if (this.busy) throw new Error('a records reader reads one file at a time');
    this.busy = true;
    this.child.ref();
    (this.child.channel as { ref?: () => void } | undefined)?.ref?.();
    try {
      const stallMs = options.stallMs ?? DEFAULT_STALL_MS;
      if (!this.alive) throw this.stopped(file);
      this.child.send({ type: 'open', file, format } satisfies RecordsChildRequest);
      let rowsRead = 0;
      for (;;) {
        if (options.cancel?.isCancellationRequested) throw new CancelledError();
        const { records, done } = await this.nextBatch(file, stallMs, rowsRead);
        for (const record of records) {
          rowsRead++;
          yield record;
        }
        if (done) return;
      }
    } finally {
      this.busy = false;
      this.idle();
    }
  }

  close(): void {
    if (this.alive) this.child.kill('SIGKILL');
  }

  /** An idle reader keeps neither the CLI nor a test process alive. */
  private idle(): void {
    this.child.unref();
    (this.child.channel as { unref?: () => void } | undefined)?.unref?.();
  }

  private nextBatch(file: string, stallMs: number, rowsRead: number): Promise<{ records: DatasetRecord[]; done: boolean }> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        cleanup();
        this.close();
        reject(new UserError(`${file}: reading took more than ${Math.round(stallMs / 1000)} s on row ${rowsRead + 1} and was stopped (a corrupt or hostile file?).`));
      }, stallMs);
      const onMessage = (reply: RecordsChildReply) => {
        cleanup();
        if (reply.type === 'error') reject(deserializeError(reply.error));
        else resolve(reply);
      };
      const onExit = () => {
        cleanup();
        reject(this.stopped(file));
      };
      const cleanup = () => {
        clearTimeout(timer);
        this.child.off('message', onMessage).off('exit', onExit);
      };
      this.child.on('message', onMessage).on('exit', onExit);
      if (!this.alive) return onExit();
      try {
        this.child.send({ type: 'next' } satisfies RecordsChildRequest);
      } catch {
        onExit();
      }
    });
  }

  private stopped(file: string): UserError {
    const fatal = [/Fatal JavaScript[^\n]*/, /[^\n]*heap out of memory[^\n]*/i, /Fatal [^\n]*/].map((pattern) => pattern.exec(this.stderr)?.[0]).find(Boolean)?.replace(/^#\s*/, '');
    return new UserError(`${file} could not be read: the reader stopped (${this.exit ?? 'it exited'}${fatal ? `: ${fatal.trim().slice(0, 200)}` : ''}; a corrupt or hostile file?).`);
  }
}

/** `readRecords` in a reader process of its own (or `reader`, reused), stopped when done. */
export async function* sandboxedRecords(
  file: string,
  format: DatasetFormat,
  options: { stallMs?: number; cancel?: Cancellation; reader?: RecordsReader } = {},
): AsyncGenerator<DatasetRecord> {
  const reader = options.reader ?? new RecordsReader();
  try {
    yield* reader.read(file, format, options);
  } finally {
    if (!options.reader) reader.close();
  }
}
