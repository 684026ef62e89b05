import type { MemoryPlan } from './memoryBudget';
import { loadHeld, MemoryLedger } from './memoryLedger';

/** What the residency needs of a session: something to release. */
export interface Releasable {
  release(): Promise<void>;
}

/**
 * Which decoder layers are loaded, as the memory plan says: its resident layers once, at open, for the
 * runtime's lifetime; any other layer loaded when a pass reaches it and released when the pass leaves
 * it. Also counts the loads, so progress and estimates can say what streaming costs, and holds each
 * loaded layer's bytes in the engine's ledger.
 */
export class LayerResidency<S extends Releasable> {
  private readonly resident = new Map<number, { session: S; unhold: () => void }>();
  private readonly streamed = new Map<S, () => void>();
  /** Loads of layers that are not resident (what streaming costs), with their time and bytes. */
  loads = 0;
  loadSeconds = 0;
  loadedBytes = 0;

  constructor(
    private readonly memory: MemoryPlan,
    private readonly load: (layer: number) => Promise<S>,
    private readonly ledger = new MemoryLedger(),
  ) {}

  async open(): Promise<void> {
    for (const layer of this.memory.residentLayers) this.resident.set(layer, await loadHeld(this.ledger, this.memory.layerBytes[layer], () => this.load(layer)));
  }

  /** The layer's session, loading it when it is not resident; hand it back with `release`. */
  async acquire(layer: number): Promise<S> {
    return this.resident.get(layer)?.session ?? (await this.timedLoad(layer));
  }

  async release(layer: number, session: S): Promise<void> {
    if (this.resident.get(layer)?.session === session) return;
    await session.release();
    this.streamed.get(session)?.();
    this.streamed.delete(session);
  }

  async close(): Promise<void> {
    for (const { session, unhold } of this.resident.values()) {
      await session.release();
      unhold();
    }
    this.resident.clear();
  }

  private async timedLoad(layer: number): Promise<S> {
    const started = performance.now();
    const { session, unhold } = await loadHeld(this.ledger, this.memory.layerBytes[layer], () => this.load(layer));
    this.streamed.set(session, unhold);
    this.loads++;
    this.loadSeconds += (performance.now() - started) / 1000;
    this.loadedBytes += this.memory.layerBytes[layer];
    return session;
  }
}
