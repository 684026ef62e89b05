import type { MemoryPlan } from './memoryBudget';
import { loadHeld, MemoryLedger } from './memoryLedger';

/** What the residency needs of a session: something to release. */
export interface Releasable {
  release(): Promise<void>;
}

/**
 * Which decoder layers (and the head) are loaded, as the memory plan says: its resident ones once, at
 * open, for the runtime's lifetime; any other loaded when a pass reaches it and released when the pass
 * leaves it. Unit `L` (one past the last layer) is the head. Also counts the loads, so progress and
 * estimates can say what streaming costs, and holds each loaded unit's bytes in the engine's ledger.
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

  private readonly bytes: number[];
  private readonly residentUnits: number[];
  /** The head's unit when it is pinned but loaded on first use (layers stream); else -1. */
  private readonly lazyHead: number;

  constructor(
    memory: MemoryPlan,
    /** `prepack`: whether onnxruntime prepacks the weights (see `prepacksFor`); a resident unit always does. */
    private readonly load: (unit: number, prepack: boolean) => Promise<S>,
    private readonly ledger = new MemoryLedger(),
  ) {
    this.bytes = [...memory.layerBytes, memory.headBytes];
    this.lazyHead = memory.policy !== 'resident' && memory.headResident ? memory.layerBytes.length : -1;
    this.residentUnits = [...memory.residentLayers, ...(memory.headResident ? [memory.layerBytes.length] : [])];
  }

  /**
   * Loads the resident layers. When layers stream, a pinned head is loaded when first asked for, then
   * kept: work without losses or logits (a profile) never needs it, and on Qwen3-30B-A3B it is 1.2 GB
   * and seconds to load. Loading it later is priced: the streaming slot holds twice the head, and no
   * layer is in the slot when a pass reaches the head.
   */
  async open(): Promise<void> {
    for (const unit of this.residentUnits) if (unit !== this.lazyHead) await this.loadResident(unit);
  }

  /**
   * The layer's session, loading it when it is not resident; hand it back with `release`. `prepack`
   * says how a layer loaded now for this pass alone is loaded (default: prepacked); resident ones are.
   */
  async acquire(layer: number, prepack = true): Promise<S> {
    const resident = this.resident.get(layer)?.session;
    if (resident) return resident;
    if (layer === this.lazyHead) return this.loadResident(layer);
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
