/**
 * Profiling a dataset end to end: read rows, tokenise them as the model was trained (the tokenizer's
 * own special tokens, e.g. Mixtral's `<s>`), run the model in its worker with MoE captures, and fold
 * the captures into the statistics of the profile file. Memory is the statistics (layers × E²), the
 * token records and two batches in flight, whatever the dataset size.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ProfileRunSettings } from '../../../../common/protocol';
import { datasetFormatOf } from '../../datasets/format';
import type { DatasetRecord } from '../../datasets/records';
import { sandboxedRecords } from '../../datasets/sandboxedRecords';
import { CancelledError, UserError, errorMessage, isUserError } from '../../errors';
import { estimateWork, ForwardCancelledError, workSetTokens, type ForwardProgress, type ModelRuntime, type WorkEstimate } from '../../runtime';
import type { RowTokenizer } from '../../checkpoint/tokenizeRow';
import { buildProfile, defaultProfilePath, fileSha256, loadCurrentProfile, profileCacheKey, saveProfile, type ProfileInputs } from '../profileFile';
import { Profiler } from '../profiler';
import { fieldLabel, rowText } from '../textField';
import { loadChatTemplate, type ChatTemplate } from '../chatTemplate';
import type { SequenceTokens } from '../tokenRecords';
import type { FieldSpec, ProfileFile, ProfileSettings } from '../types';
import { modelIdentity, profileModel, relativeToWorkspace } from './modelIdentity';
import { RuntimePool } from './runtimePool';

export type { ProfileRunSettings };

export const DEFAULT_PROFILE_SETTINGS: ProfileRunSettings = { sequenceLength: 256, maxRows: 2000, tokenRecords: 4096, onMalformed: 'skip', threads: 0 };

export interface ProfileProgress {
  tokens: number;
  /** Tokens the whole run will profile, extrapolated from the bytes read so far. */
  totalTokensEstimate: number;
  tokensPerSecond: number;
  secondsLeft: number;
  rows: number;
  /** While layers stream: where the current pass (one work set of rows) is. */
  pass?: { number: number; layer: number; layers: number };
}

/** One line for the CLI and the editor's progress: tokens, speed, time left, and the layer of a streamed pass. */
export function profileProgressMessage({ tokens, tokensPerSecond, secondsLeft, pass }: ProfileProgress): string {
  const format = (n: number) => Math.round(n).toLocaleString('en-US');
  const where = pass ? ` · pass ${pass.number}, layer ${pass.layer} of ${pass.layers}` : '';
  return `${format(tokens)} tokens · ${format(tokensPerSecond)} tok/s · ${format(secondsLeft)} s left${where}`;
}

/**
 * Time left of a streamed profile. Its first work set is a short one (the first rows, for a quick first
 * result) and its first passes load every layer, the pinned ones included, so a rate measured on them is
 * mostly loading: on OLMoE-1B-7B in int8 under 6 GB a 1,024-token profile said "226 s left" and took 71 s.
 * Until two work sets are in, the estimate's measured warm-up is the better guide: what it leaves of its
 * time, or at least the current pass's own remainder; once it has run out (it was low), or after two work
 * sets, the extrapolation from the speed so far.
 */
export function streamedSecondsLeft({ estimateLeft, passLeft, extrapolated }: { estimateLeft?: number; passLeft: number; extrapolated: number }): number {
  if (estimateLeft === undefined || estimateLeft <= 0) return extrapolated;
  return Math.max(estimateLeft, passLeft);
}

export interface ProfileDatasetOptions {
  datasetFile: string;
  modelFolder: string;
  field: FieldSpec;
  /** Profiles are saved under `<workspaceFolder>/.moe-studio/profiles/`. */
  workspaceFolder: string;
  settings?: Partial<ProfileRunSettings>;
  /** Where to save; default `defaultProfilePath`. */
  outFile?: string;
  force?: boolean;
  signal?: AbortSignal;
  onProgress?(progress: ProfileProgress): void;
  /** Time and peak memory of the run, measured on its first rows before the long work starts. */
  onEstimate?(estimate: WorkEstimate): void;
  /** Open models to use; default the process-wide pool. */
  runtimes?: RuntimePool;
}

export interface ProfileDatasetResult {
  profilePath: string;
  reused: boolean;
  profile: ProfileFile;
  notes: string[];
}

/** The models of this process, shared by every request; `closeSharedRuntimes` on shutdown. */
export const sharedRuntimes = new RuntimePool();

/** The first batch is small so the worker starts while the token records' offsets are still being aligned. */
const FIRST_BATCH_TOKENS = 256;
const MALFORMED_LINES_KEPT = 10;

export async function profileDataset(options: ProfileDatasetOptions): Promise<ProfileDatasetResult> {
  const settings = { ...DEFAULT_PROFILE_SETTINGS, ...options.settings };
  const maxRows = settings.maxRows && settings.maxRows > 0 ? settings.maxRows : null;
  if (!(Number.isInteger(settings.sequenceLength) && settings.sequenceLength >= 1)) throw new UserError(`sequence length must be a positive integer, got ${settings.sequenceLength}`);
  const datasetFile = path.resolve(options.datasetFile);
  const format = datasetFormatOf(datasetFile);
  const before = await statDataset(datasetFile);
  throwIfAborted(options.signal);

  const identity = await modelIdentity(options.modelFolder);
  const chat = options.field.kind === 'chat' ? await loadChatTemplate(identity.folder) : undefined;
  const profileSettings: ProfileSettings = { sequenceLength: settings.sequenceLength, maxRows, tokenRecords: settings.tokenRecords };
  const inputs: ProfileInputs = {
    model: profileModel(identity, options.workspaceFolder),
    dataset: {
      file: relativeToWorkspace(datasetFile, options.workspaceFolder),
      format,
      field: options.field,
      rows: 0,
      contentSha256: await fileSha256(datasetFile),
      ...(options.field.kind === 'chat' ? { chatTemplate: chat ? ('model' as const) : ('plain' as const) } : {}),
      malformedRows: 0,
      firstMalformedLines: [],
    },
    settings: profileSettings,
  };
  const profilePath = path.resolve(options.outFile ?? defaultProfilePath(options.workspaceFolder, datasetFile, identity.folder));
  if (!options.force) {
    const current = await loadCurrentProfile(profilePath, profileCacheKey(inputs));
    if (current) return { profilePath, reused: true, profile: current, notes: ['Reused the saved profile: same model, data, field and settings.'] };
  }
  throwIfAborted(options.signal);

  const runtimes = options.runtimes ?? sharedRuntimes;
  const { runtime, tokenizer } = await runtimes.get(identity, settings.threads);
  const run = new ProfileRun(datasetFile, format, options.field, settings, maxRows, before.size, tokenizer, options.onProgress, options.onEstimate, chat);
  try {
    await run.execute(runtime, options.signal);
  } catch (error) {
    if (error instanceof ForwardCancelledError || options.signal?.aborted) throw new CancelledError('Profiling cancelled; the previous profile (if any) is unchanged.');
    if (!isUserError(error)) runtimes.discard(identity);
    throw error;
  }
  const after = await statDataset(datasetFile);
  if (after.size !== before.size || after.mtimeMs !== before.mtimeMs) {
    throw new UserError(`${path.basename(datasetFile)} changed during profiling, run again.`);
  }
  const result = run.finish();
  const profile = buildProfile({ ...inputs, dataset: { ...inputs.dataset, rows: run.rows, malformedRows: run.malformed, firstMalformedLines: run.malformedLines } }, result);
  throwIfAborted(options.signal);
  await saveProfile(profilePath, profile);
  return { profilePath, reused: false, profile, notes: run.notes() };
}

interface PreparedBatch {
  sequences: SequenceTokens[];
  tokens: number;
}

/** One pass over a dataset: reading and tokenising the next batch while the worker runs the current one. */
class ProfileRun {
  rows = 0;
  malformed = 0;
  readonly malformedLines: number[] = [];
  private truncated = 0;
  private emptyRows = 0;
  private firstFieldError?: string;
  private recordsLeft: number;
  private tokens = 0;
  private tokensRead = 0;
  private bytesRead = 0;
  private rowIndex = 0;
  private readonly profiler: Profiler;
  /** Read in a worker (a corrupt Parquet page can loop forever), a batch of rows at a time. */
  private readonly records: AsyncGenerator<DatasetRecord>;
  private exhausted = false;
  /** True when maxRows stopped the run before the data ended. */
  private limited = false;
  private started = 0;
  /** Tokens per forward call (one work set): the batch limit, or, when layers stream, what the budget holds. */
  private batchTokens = 2048;
  private passes = 0;
  /** Work sets folded in so far. */
  private folded = 0;
  private firstPrepareSeconds = 0;
  /** The estimate's total seconds and when it was made (streamed runs: see `streamedSecondsLeft`). */
  private estimated?: { seconds: number; at: number };

  constructor(
    private readonly file: string,
    format: ReturnType<typeof datasetFormatOf>,
    private readonly field: FieldSpec,
    private readonly settings: ProfileRunSettings,
    private readonly maxRows: number | null,
    private readonly fileBytes: number,
    /** Sandboxed in the server (a tokenizer's regex can backtrack without end); rows wait on it, the thread does not. */
    private readonly tokenizer: RowTokenizer,
    private readonly onProgress?: (progress: ProfileProgress) => void,
    private readonly onEstimate?: (estimate: WorkEstimate) => void,
    private readonly chat?: ChatTemplate,
  ) {
    this.profiler = new Profiler({ tokenRecords: settings.tokenRecords });
    this.recordsLeft = settings.tokenRecords;
    this.records = sandboxedRecords(file, format);
  }

  async execute(runtime: ModelRuntime, signal?: AbortSignal): Promise<void> {
    this.started = performance.now();
    // Two work sets are in flight (one computing, one being folded), so each gets half the room.
    this.batchTokens = workSetTokens(runtime.memory, runtime.model, { moe: true }, 2);
    const streamed = runtime.memory.policy !== 'resident';
    try {
      const preparing = performance.now();
      let next = await this.prepare(signal);
      this.firstPrepareSeconds = (performance.now() - preparing) / 1000;
      if (this.onEstimate && next.tokens > 0) {
        const estimate = await this.estimate(runtime, next);
        if (streamed) this.estimated = { seconds: estimate.seconds, at: performance.now() };
        this.onEstimate(estimate);
      }
      let inFlight: { batch: PreparedBatch; result: ReturnType<ModelRuntime['forward']> } | undefined;
      while (next.tokens > 0 || inFlight) {
        const pass = ++this.passes;
        const batch = next;
        const onProgress = streamed ? (progress: ForwardProgress) => this.reportLayer(pass, batch.tokens, progress) : undefined;
        const launched = next.tokens > 0 ? { batch: next, result: runtime.forward({ sequences: next.sequences.map((s) => s.tokenIds as Int32Array), outputs: { moe: true } }, { signal, onProgress }) } : undefined;
        // Awaited below; until then a failure of this batch must not count as unhandled.
        launched?.result.catch(() => undefined);
        // Keep the worker busy: fold in the previous batch and tokenise the next one meanwhile.
        if (inFlight) await this.fold(inFlight.batch, await inFlight.result);
        inFlight = launched;
        throwIfAborted(signal);
        next = launched ? await this.prepare(signal) : { sequences: [], tokens: 0 };
      }
    } finally {
      await this.records.return(undefined);
    }
    if (this.rows === 0) throw new UserError(this.emptyReason());
  }

  finish() {
    return this.profiler.finalize();
  }

  notes(): string[] {
    const notes: string[] = [];
    const plural = (n: number, word: string) => `${n.toLocaleString('en-US')} ${word}${n === 1 ? '' : 's'}`;
    if (this.truncated > 0) notes.push(`${plural(this.truncated, 'row')} truncated to ${this.settings.sequenceLength} tokens.`);
    if (this.malformed > 0) notes.push(`${plural(this.malformed, 'malformed row')} skipped (first at line${this.malformedLines.length === 1 ? '' : 's'} ${this.malformedLines.join(', ')}).`);
    if (this.emptyRows > 0) notes.push(`${plural(this.emptyRows, 'row')} with empty text skipped.`);
    if (this.limited && this.maxRows !== null) notes.push(`Profiled the first ${plural(this.maxRows, 'row')} (the maxRows setting).`);
    return notes;
  }

  private async fold(batch: PreparedBatch, result: Awaited<ReturnType<ModelRuntime['forward']>>): Promise<void> {
    batch.sequences.forEach((sequence, i) => {
      const moe = result.sequences[i].moe;
      if (!moe) throw new Error('the runtime returned no MoE captures');
      this.profiler.addSequence(sequence, moe);
    });
    this.tokens += batch.tokens;
    this.folded++;
    const seconds = (performance.now() - this.started) / 1000;
    const tokensPerSecond = seconds > 0 ? this.tokens / seconds : 0;
    const totalTokensEstimate = this.totalTokensEstimate();
    const extrapolated = tokensPerSecond > 0 ? (totalTokensEstimate - this.tokens) / tokensPerSecond : 0;
    const secondsLeft = this.tokens >= totalTokensEstimate ? 0 : streamedSecondsLeft({ estimateLeft: this.estimateLeft(), passLeft: 0, extrapolated });
    this.onProgress?.({ tokens: this.tokens, totalTokensEstimate, tokensPerSecond, secondsLeft, rows: this.rows });
  }

  /** From the first rows: the run's tokens by the bytes (and rows) they took, one pass per work set. */
  private async estimate(runtime: ModelRuntime, first: PreparedBatch): Promise<WorkEstimate> {
    const fromBytes = this.bytesRead > 0 ? (first.tokens / this.bytesRead) * this.fileBytes : first.tokens;
    const fromRows = this.maxRows !== null ? (first.tokens / Math.max(1, this.rows)) * this.maxRows : Infinity;
    const tokens = Math.max(first.tokens, Math.min(fromBytes, fromRows));
    const passesPerRepeat = runtime.memory.policy === 'resident' ? 1 : 1 + Math.ceil(Math.max(0, tokens - first.tokens) / this.batchTokens);
    const hostSecondsPerToken = this.firstPrepareSeconds / first.tokens;
    return estimateWork(runtime, first.sequences.map((s) => s.tokenIds as Int32Array), { tokens, passesPerRepeat, hostSecondsPerToken }, { moe: true });
  }

  /** What the estimate leaves of its time, until two work sets are folded in (see streamedSecondsLeft). */
  private estimateLeft(): number | undefined {
    if (!this.estimated || this.folded >= 2) return undefined;
    return this.estimated.seconds - (performance.now() - this.estimated.at) / 1000;
  }

  /** From the rows read so far (the tokenised ones, ahead of those profiled). */
  private totalTokensEstimate(): number {
    const fromBytes = this.bytesRead > 0 ? (this.tokensRead / this.bytesRead) * this.fileBytes : this.tokensRead;
    const fromRows = this.maxRows !== null && this.rows > 0 ? (this.tokensRead / this.rows) * this.maxRows : Infinity;
    return Math.max(this.tokensRead, Math.round(Math.min(fromBytes, fromRows)));
  }

  /**
   * A streamed pass can take minutes: between layers the time left is this pass's (the runtime's
   * extrapolation) plus the tokens after it at the speed so far (or, in the first pass, this pass's).
   */
  private reportLayer(pass: number, passTokens: number, progress: ForwardProgress): void {
    const elapsed = (performance.now() - this.started) / 1000;
    const passSeconds = progress.seconds + progress.secondsLeft;
    const rate = this.tokens > 0 ? this.tokens / Math.max(1e-9, elapsed - progress.seconds) : passTokens / Math.max(1e-9, passSeconds);
    const after = Math.max(0, this.totalTokensEstimate() - this.tokens - passTokens);
    this.onProgress?.({
      tokens: this.tokens,
      totalTokensEstimate: this.totalTokensEstimate(),
      tokensPerSecond: rate,
      secondsLeft: streamedSecondsLeft({ estimateLeft: this.estimateLeft(), passLeft: progress.secondsLeft, extrapolated: progress.secondsLeft + after / rate }),
      rows: this.rows,
      pass: { number: pass, layer: progress.layersDone, layers: progress.layers },
    });
  }

  /** Reads and tokenises rows until the batch holds about `batchTokens` tokens (or the data ends). */
  private async prepare(signal?: AbortSignal): Promise<PreparedBatch> {
    const batch: PreparedBatch = { sequences: [], tokens: 0 };
    const limit = this.rowIndex === 0 ? FIRST_BATCH_TOKENS : this.batchTokens;
    while (batch.tokens < limit && !this.exhausted) {
      if (this.maxRows !== null && this.rows >= this.maxRows) {
        this.exhausted = true;
        this.limited = !(await this.records.next()).done;
        break;
      }
      const next = await this.records.next();
      if (next.done) {
        this.exhausted = true;
        break;
      }
      const record = next.value;
      const row = this.rowIndex++;
      this.bytesRead += record.bytes + 1;
      if (record.error?.startsWith('not valid UTF-8')) {
        throw new UserError(`${path.basename(this.file)} is not UTF-8 text (line ${record.line} is not valid UTF-8; is this a binary file?).`);
      }
      let text: string;
      try {
        if (record.error) throw new UserError(`line ${record.line}: ${record.error}`);
        text = rowText(record.value, this.field, record.line, this.chat);
      } catch (error) {
        if (!isUserError(error)) throw error;
        if (!record.error) this.firstFieldError ??= errorMessage(error);
        this.malformedRow(record.line, errorMessage(error));
        continue;
      }
      if (text === '') {
        this.emptyRows++;
        continue;
      }
      const sequence = await this.tokenise(row, text, record.line);
      batch.sequences.push(sequence);
      batch.tokens += sequence.tokenIds.length;
      this.tokensRead += sequence.tokenIds.length;
      this.rows++;
      throwIfAborted(signal);
    }
    return batch;
  }

  private async tokenise(row: number, text: string, line: number): Promise<SequenceTokens> {
    const where = `line ${line} of ${path.basename(this.file)}`;
    const [{ ids: tokenIds, length: fullLength, offsets }] = await this.tokenizer.tokenizeRows([{ text, maxTokens: this.settings.sequenceLength, offsetTokens: this.recordsLeft, where }]);
    const length = tokenIds.length;
    if (fullLength > length) this.truncated++;
    const wanted = Math.min(this.recordsLeft, length);
    if (wanted === 0) return { row, tokenIds, offsets: [] };
    this.recordsLeft -= wanted;
    // Tokens past the records still wanted get empty spans: the recorder stops before them.
    const end = offsets.length > 0 ? offsets[offsets.length - 1][1] : 0;
    while (offsets.length < length) offsets.push([end, end]);
    return { row, tokenIds, offsets };
  }

  private malformedRow(line: number, problem: string): void {
    if (this.settings.onMalformed === 'stop') {
      throw new UserError(`${path.basename(this.file)} ${problem}. Set moeStudio.profile.onMalformedRows to "skip" to profile the other rows.`);
    }
    this.malformed++;
    if (this.malformedLines.length < MALFORMED_LINES_KEPT) this.malformedLines.push(line);
  }

  private emptyReason(): string {
    const name = path.basename(this.file);
    if (this.firstFieldError) return `${name}: no row has ${fieldLabel(this.field)}. First problem: ${this.firstFieldError}`;
    if (this.malformed > 0) return `${name}: no row could be read (${this.malformed} malformed, first at lines ${this.malformedLines.join(', ')}).`;
    return `${name} has no rows with text to profile (the dataset is empty).`;
  }
}

async function statDataset(file: string): Promise<fs.Stats> {
  try {
    const stats = await fs.promises.stat(file);
    if (!stats.isFile()) throw new UserError(`${file} is not a file.`);
    return stats;
  } catch (error) {
    if (isUserError(error)) throw error;
    throw new UserError(`${file} does not exist or cannot be read (${errorMessage(error)}).`);
  }
}

function throwIfAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw new CancelledError('Profiling cancelled; the previous profile (if any) is unchanged.');
}
