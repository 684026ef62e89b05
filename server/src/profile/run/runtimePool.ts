/**
 * Open models, kept across requests: starting a runtime costs a worker, a checkpoint load and graph
 * builds, so one per (folder, threads, weights, budget, precision) stays open until the pool is closed
 * (server shutdown). A runtime whose worker died is replaced by a fresh one on the next request.
 */
import * as os from 'node:os';
import { SandboxedTokenizer, type TokenizerLimits } from '../../checkpoint/sandboxedTokenizer';
import { UserError } from '../../errors';
import { ModelRuntime, type Precision } from '../../runtime';
import type { ModelIdentity } from './modelIdentity';

/** How the pool opens models: the `moeStudio.memoryBudget` and `moeStudio.precision` settings (or the CLI's flags). */
export interface RuntimeSettings {
  /** Bytes; undefined = the default from the machine's RAM. */
  memoryBudget?: number;
  precision?: Precision;
  /** Where the one-line memory decision of each opened model goes (the CLI's stderr, the output channel). */
  report?: (line: string) => void;
  /** Time limits of the tokenizer's worker; default `DEFAULT_ROW_MS` a row (tests shorten it). */
  tokenizerLimits?: TokenizerLimits;
}

export interface OpenModel {
  runtime: ModelRuntime;
  /** In its own worker, so a tokenizer that hangs on a row is stopped without stopping the server. */
  tokenizer: SandboxedTokenizer;
}

export class RuntimePool {
  private readonly models = new Map<string, Promise<OpenModel>>();
  /** Runtimes started so far (tests check that a reused profile starts none). */
  opened = 0;
  private settings: RuntimeSettings = {};

  /** Settings for models opened from now on; an open model under other settings is replaced when next asked for. */
  configure(settings: RuntimeSettings): void {
    this.settings = { ...this.settings, ...settings };
  }

  /** The open model for this identity; `threads` 0 means all cores but one. */
  async get(identity: ModelIdentity, threads: number): Promise<OpenModel> {
    const resolvedThreads = threads > 0 ? threads : defaultThreads();
    const { memoryBudget, precision = 'fp32', report, tokenizerLimits } = this.settings;
    const key = `${identity.folder}\0${resolvedThreads}\0${identity.fingerprint}\0${memoryBudget ?? 'default'}\0${precision}`;
    let model = this.models.get(key);
    if (model && (await model.then((open) => open.runtime.failed !== undefined, () => true))) {
      // Another request may have replaced it meanwhile.
      if (this.models.get(key) === model) this.evict(key, model);
      model = this.models.get(key);
    }
    if (!model) {
      // A different fingerprint for the same folder means the weights changed: the old runtime is stale.
      for (const [other, stale] of this.models) {
        if (other.startsWith(`${identity.folder}\0`)) this.evict(other, stale);
      }
      this.opened++;
      model = (async () => {
        const tokenizer = await SandboxedTokenizer.open(identity.folder, identity.config, tokenizerLimits);
        const runtime = await ModelRuntime.open(identity.folder, { threads: resolvedThreads, memoryBudget, precision }).catch(async (error: Error) => {
          await tokenizer.close();
          // The budget's verdict, with its numbers, is the user's to act on.
          throw error.name === 'MemoryBudgetError' ? new UserError(error.message) : error;
        });
        report?.(`${identity.folder.split(/[\\/]/).pop()}: ${runtime.memory.summary}`);
        return { runtime, tokenizer };
      })();
      model.catch(() => this.models.delete(key));
      this.models.set(key, model);
    }
    return model;
  }

  /** Forgets a model whose runtime failed, so the next request starts a fresh one. */
  discard(identity: ModelIdentity): void {
    for (const [key, model] of this.models) {
      if (key.startsWith(`${identity.folder}\0`)) this.evict(key, model);
    }
  }

  async close(): Promise<void> {
    const models = [...this.models.values()];
    this.models.clear();
    await Promise.all(models.map((model) => model.then(({ runtime, tokenizer }) => Promise.all([runtime.close(), tokenizer.close()]), () => undefined)));
  }

  private evict(key: string, model: Promise<OpenModel>): void {
    this.models.delete(key);
    void model.then(({ runtime, tokenizer }) => Promise.all([runtime.close(), tokenizer.close()]), () => undefined);
  }
}

export function defaultThreads(): number {
  return Math.max(1, (os.availableParallelism?.() ?? os.cpus().length) - 1);
}
