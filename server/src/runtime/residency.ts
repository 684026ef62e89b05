import type { MemoryPlan } from './memoryBudget';
import { loadHeld, MemoryLedger } from './memoryLedger';

/** What the residency needs of a session: something to release. */
export interface Releasable {
  release(): Promise<void>;
}

/**
 * Which decoder layers (and the head) are loaded, as the memory plan says: its resident ones once, for
 * the runtime's lifetime (at open when every layer is resident, else when a pass first reaches them);
 * any other loaded when a pass reaches it and released when the pass leaves it. Unit `L` (one past the
 * last layer) is the head. Also counts the loads, so progress and estimates can say what streaming
 * costs, and holds each loaded unit's bytes in the engine's ledger.
 */
export class LayerResidency<S extends Releasable> {
  private readonly resident = new Map<number, { session: S; unhold: () => void }>();
  private readonly streamed = new Map<S, () => void>();
  /** Loads of layers that are not resident (what streaming costs), with their time and bytes. */
  loads = 0;
  loadSeconds = 0;
  loadedBytes = 0;
  /** Of those loads, the ones not prepacked (`prepacksFor`). */
  unpackedLoads = 0;
  /** Pinned units loaded by a pass on first use (layers stream), and their time. */
  pinnedLoads = 0;
  pinnedLoadSeconds = 0;

  private readonly bytes: number[];
  private readonly residentUnits: number[];
  /** The pinned units loaded on first use, not at open: all of them when layers stream; else none. */
  private readonly lazy: Set<number>;

  constructor(
    memory: MemoryPlan,
    /** `prepack`: whether onnxruntime prepacks the weights (see `prepacksFor`); a resident unit always does. */
    private readonly load: (unit: number, prepack: boolean) => Promise<S>,
    private readonly ledger = new MemoryLedger(),
  ) {
    this.bytes = [...memory.layerBytes, memory.headBytes];
    this.residentUnits = [...memory.residentLayers, ...(memory.headResident ? [memory.layerBytes.length] : [])];
    this.lazy = new Set(memory.policy === 'resident' ? [] : this.residentUnits);
  }

  /**
   * Loads the resident layers when every layer is. When layers stream, a pinned layer or head is loaded
   * when a pass first asks for it, then kept:
   * - the layer writer writes it ahead while the layer before it runs, as it does a streamed one; loaded
   *   at open, one after the other, the 8 pinned int8 layers of OLMoE-1B-7B at 6 GB took 42-66 s before
   *   the first token ran (runtime README, "Pinned layers on first use");
   * - work without losses or logits (a profile) never needs the head (Qwen3-30B-A3B: 1.2 GB, seconds).
   * Loading one later is priced: a pass takes one unit at a time, so the streaming slot, which holds
   * twice a layer and twice the head, is empty when it loads.
   */
  async open(): Promise<void> {
    for (const unit of this.residentUnits) if (!this.lazy.has(unit)) await this.loadResident(unit);
  }

  /** Whether acquiring the unit now loads it: it is streamed, or pinned and not loaded yet. */
  needsLoad(unit: number): boolean {
    return !this.resident.has(unit);
  }

  /**
   * The layer's session, loading it when it is not resident; hand it back with `release`. `prepack`
   * says how a layer loaded now for this pass alone is loaded (default: prepacked); resident ones are.
   */
  async acquire(layer: number, prepack = true): Promise<S> {
    const resident = this.resident.get(layer)?.session;
    if (resident) return resident;
    if (this.lazy.has(layer)) {
      const started = performance.now();
      const session = await this.loadResident(layer);
      this.pinnedLoads++;
      this.pinnedLoadSeconds += (performance.now() - started) / 1000;
      return session;
    }
    return this.timedLoad(layer, prepack);
  }

  private async loadResident(unit: number): Promise<S> {
    const held = await loadHeld(this.ledger, this.bytes[unit], () => this.load(unit, true));
    this.resident.set(unit, held);
    return held.session;
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

  private async timedLoad(layer: number, prepack: boolean): Promise<S> {
    const started = performance.now();
    const { session, unhold } = await loadHeld(this.ledger, this.bytes[layer], () => this.load(layer, prepack));
    this.streamed.set(session, unhold);
    this.loads++;
    if (!prepack) this.unpackedLoads++;
    this.loadSeconds += (performance.now() - started) / 1000;
    this.loadedBytes += this.bytes[layer];
    return session;
  }
}
