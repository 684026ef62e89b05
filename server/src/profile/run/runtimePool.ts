/**
 * Open models, kept across requests: starting a runtime costs a worker, a checkpoint load and graph
 * builds, so one per (folder, threads, weights) stays open until the pool is closed (server shutdown).
 */
import * as os from 'node:os';
import { loadTokenizer } from '../../checkpoint';
import type { TextTokenizer } from '../../checkpoint/modelSpec';
import { ModelRuntime } from '../../runtime';
import type { ModelIdentity } from './modelIdentity';

export interface OpenModel {
  runtime: ModelRuntime;
  tokenizer: TextTokenizer;
}

export class RuntimePool {
  private readonly models = new Map<string, Promise<OpenModel>>();
  /** Runtimes started so far (tests check that a reused profile starts none). */
  opened = 0;

  /** The open model for this identity; `threads` 0 means all cores but one. */
  get(identity: ModelIdentity, threads: number): Promise<OpenModel> {
    const resolvedThreads = threads > 0 ? threads : defaultThreads();
    const key = `${identity.folder}\0${resolvedThreads}\0${identity.fingerprint}`;
    let model = this.models.get(key);
    if (!model) {
      // A different fingerprint for the same folder means the weights changed: the old runtime is stale.
      for (const [other, stale] of this.models) {
        if (other.startsWith(`${identity.folder}\0`)) this.evict(other, stale);
      }
      this.opened++;
      model = (async () => {
        const tokenizer = await loadTokenizer(identity.folder, identity.config);
        const runtime = await ModelRuntime.open(identity.folder, { threads: resolvedThreads });
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
    await Promise.all(models.map((model) => model.then(({ runtime }) => runtime.close(), () => undefined)));
  }

  private evict(key: string, model: Promise<OpenModel>): void {
    this.models.delete(key);
    void model.then(({ runtime }) => runtime.close(), () => undefined);
  }
}

export function defaultThreads(): number {
  return Math.max(1, (os.availableParallelism?.() ?? os.cpus().length) - 1);
}
