/**
 * The tokenizer of a model folder, run in a worker thread. tokenizer.json comes from strangers: its
 * normalizer and pre-tokenizer regexes run synchronously on every row, and one that backtracks
 * catastrophically would freeze whatever thread runs it. `findCatastrophicPattern` refuses the
 * known shape at load (the fast first line); anything that still takes too long on a row is killed
 * here, with a message naming tokenizer.json and the row, and the next request starts a fresh worker.
 */
import * as path from 'node:path';
import { Worker, type WorkerOptions } from 'node:worker_threads';
import { deserializeError, type SerializedError } from '../runtime/runtimeProtocol';
import { workerEntry } from '../workerEntry';
import { CheckpointError } from './errors';
import { TOKENIZER_FILE } from './tokenizer';
import type { RowTokenizer, TokenizedRow, TokenizeRequest } from './tokenizeRow';

export type TokenizerWorkerRequest = { id: number; rows: readonly TokenizeRequest[] };
export type TokenizerWorkerReply =
  | { type: 'ready'; bosTokenId?: number; eosTokenId?: number }
  | { type: 'row'; id: number; index: number; row: TokenizedRow }
  | { type: 'error'; id?: number; error: SerializedError };

export interface TokenizerLimits {
  /**
   * Longest one row may take. Real tokenizers do a 100 KB row in well under a second (a few MB/s of
   * text); a row that takes this long is a pattern that backtracks.
   */
  rowMs?: number;
  /** Longest loading tokenizer.json may take (parsing a 10 MB vocabulary takes about a second). */
  loadMs?: number;
}

export const DEFAULT_ROW_MS = 20_000;
export const DEFAULT_LOAD_MS = 60_000;
/** A real tokenizer (150,000 tokens and merges) takes a few hundred MB; a worker past this is killed by V8. */
const WORKER_HEAP_MB = 2048;

function workerScript(): { script: string; options: WorkerOptions } {
  return workerEntry(__dirname, 'tokenizerWorker.js', 'tokenizerWorker.ts');
}

export class SandboxedTokenizer implements RowTokenizer {
  readonly file: string;
  private worker?: Worker;
  private starting?: Promise<Worker>;
  /** Requests run one after the other, so each row's time limit counts only its own work. */
  private queue: Promise<unknown> = Promise.resolve();
  private nextId = 1;
  private closed = false;

  private constructor(
    private readonly folder: string,
    private readonly config: Record<string, unknown>,
    private readonly limits: Required<TokenizerLimits>,
    readonly bosTokenId: number | undefined,
    readonly eosTokenId: number | undefined,
  ) {
    this.file = path.join(folder, TOKENIZER_FILE);
  }

  /** Loads the tokenizer in its worker; a broken tokenizer.json fails here, as `loadTokenizer` would. */
  static async open(folder: string, config: Record<string, unknown> = {}, limits: TokenizerLimits = {}): Promise<SandboxedTokenizer> {
    const resolved = { rowMs: limits.rowMs ?? DEFAULT_ROW_MS, loadMs: limits.loadMs ?? DEFAULT_LOAD_MS };
    const { worker, ready } = await startWorker(folder, config, resolved.loadMs);
    const tokenizer = new SandboxedTokenizer(folder, config, resolved, ready.bosTokenId, ready.eosTokenId);
    tokenizer.adopt(worker);
    return tokenizer;
  }

  tokenizeRows(rows: readonly TokenizeRequest[]): Promise<TokenizedRow[]> {
    const run = this.queue.then(() => this.run(rows));
    this.queue = run.catch(() => undefined);
    return run;
  }

  async close(): Promise<void> {
    this.closed = true;
    const worker = this.worker;
    this.worker = undefined;
    await worker?.terminate();
  }

  /** The live worker, or a fresh one when the last was killed (the tokenizer is loaded again). */
  private async liveWorker(): Promise<Worker> {
    if (this.closed) throw new Error('the tokenizer is closed');
    if (this.worker) return this.worker;
    this.starting ??= startWorker(this.folder, this.config, this.limits.loadMs).then(
      ({ worker }) => {
        this.starting = undefined;
        if (this.closed) void worker.terminate();
        else this.adopt(worker);
        return worker;
      },
      (error: unknown) => {
        this.starting = undefined;
        throw error;
      },
    );
    return this.starting;
  }

  private async run(rows: readonly TokenizeRequest[]): Promise<TokenizedRow[]> {
    if (rows.length === 0) return [];
    const worker = await this.liveWorker();
    const id = this.nextId++;
    const results: TokenizedRow[] = [];
    worker.ref();
    try {
      return await new Promise<TokenizedRow[]>((resolve, reject) => {
        let timer: NodeJS.Timeout;
        const arm = () => {
          clearTimeout(timer);
          timer = setTimeout(() => {
            const row = rows[results.length];
            cleanup();
            this.kill(worker);
            reject(
              new CheckpointError(
                'invalidTokenizer',
                `${this.file} took more than ${formatSeconds(this.limits.rowMs)} to tokenise ${row.where ?? `row ${results.length + 1}`} (${row.text.length.toLocaleString('en-US')} characters) and was stopped: ` +
                  'one of its normalizer or pre-tokenizer patterns probably backtracks on this text.',
                this.file,
              ),
            );
          }, this.limits.rowMs);
        };
        const onMessage = (reply: TokenizerWorkerReply) => {
          if (reply.type === 'ready' || reply.id !== id) return;
          if (reply.type === 'error') {
            cleanup();
            const error = deserializeError(reply.error);
            reject(reply.error.userError ? error : new CheckpointError('invalidTokenizer', `${this.file} failed on ${rows[results.length].where ?? `row ${results.length + 1}`}: ${error.message}`, this.file));
            return;
          }
          results.push(reply.row);
          if (results.length === rows.length) {
            cleanup();
            resolve(results);
          } else arm();
        };
        const onExit = (code: number) => {
          cleanup();
          this.kill(worker);
          reject(new CheckpointError('invalidTokenizer', `${this.file}: the tokenizer stopped (exit code ${code}) on ${rows[results.length].where ?? `row ${results.length + 1}`} (out of memory?).`, this.file));
        };
        const onError = (error: Error) => {
          cleanup();
          this.kill(worker);
          reject(new CheckpointError('invalidTokenizer', `${this.file}: the tokenizer failed on ${rows[results.length].where ?? `row ${results.length + 1}`}: ${error.message}`, this.file));
        };
        const cleanup = () => {
          clearTimeout(timer);
          worker.off('message', onMessage).off('exit', onExit).off('error', onError);
        };
        worker.on('message', onMessage).on('exit', onExit).on('error', onError);
        arm();
        worker.postMessage({ id, rows } satisfies TokenizerWorkerRequest);
      });
    } finally {
      worker.unref();
    }
  }

  /** An idle worker that dies (it should not) is forgotten, never an unhandled 'error' event. */
  private adopt(worker: Worker): void {
    this.worker = worker;
    worker.on('error', () => undefined).on('exit', () => {
      if (this.worker === worker) this.worker = undefined;
    });
  }

  private kill(worker: Worker): void {
    if (this.worker === worker) this.worker = undefined;
    void worker.terminate();
  }
}

/** A worker with the tokenizer loaded, within the load time limit. */
async function startWorker(folder: string, config: Record<string, unknown>, loadMs: number): Promise<{ worker: Worker; ready: { bosTokenId?: number; eosTokenId?: number } }> {
  const file = path.join(folder, TOKENIZER_FILE);
  const { script, options } = workerScript();
  const worker = new Worker(script, { ...options, workerData: { folder, config }, resourceLimits: { maxOldGenerationSizeMb: WORKER_HEAP_MB } });
  try {
    const ready = await new Promise<{ bosTokenId?: number; eosTokenId?: number }>((resolve, reject) => {
      const timer = setTimeout(() => settle(() => reject(new CheckpointError('invalidTokenizer', `${file} took more than ${formatSeconds(loadMs)} to load and was stopped.`, file))), loadMs);
      const onMessage = (reply: TokenizerWorkerReply) =>
        settle(() => {
          if (reply.type === 'ready') resolve(reply);
          else if (reply.type === 'error') reject(deserializeError(reply.error));
          else reject(new Error(`unexpected tokenizer worker message ${reply.type}`));
        });
      const onError = (error: Error) => settle(() => reject(new CheckpointError('invalidTokenizer', `${file} could not be loaded: ${error.message}`, file)));
      const onExit = (code: number) => settle(() => reject(new CheckpointError('invalidTokenizer', `${file} could not be loaded: the tokenizer stopped (exit code ${code}).`, file)));
      // Only these listeners come off: Worker keeps its own ('newListener' and the like) for message delivery.
      const settle = (outcome: () => void) => {
        clearTimeout(timer);
        worker.off('message', onMessage).off('error', onError).off('exit', onExit);
        outcome();
      };
      worker.on('message', onMessage).on('error', onError).on('exit', onExit);
    });
    worker.unref();
    return { worker, ready };
  } catch (error) {
    await worker.terminate();
    throw error;
  }
}

function formatSeconds(ms: number): string {
  return ms >= 1000 ? `${Math.round(ms / 1000)} s` : `${ms} ms`;
}
