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
  /**
   * Loaded resident units; `prepacked` false for a pinned layer a pass loaded without prepacking, with
   * `unpackedRuns`, the runs passes have made of it since.
   */
  private readonly resident = new Map<number, { session: S; unhold: () => void; prepacked: boolean; unpackedRuns: number }>();
  private readonly streamed = new Map<S, () => void>();
  /** Loads of layers that are not resident (what streaming costs), with their time and bytes. */
  loads = 0;
  loadSeconds = 0;
  loadedBytes = 0;
  /** Loads not prepacked (`prepacksFor`): streamed layers' and pinned layers' first. */
  unpackedLoads = 0;
  /** Loads of pinned units by a pass (layers stream): first uses, and pinned layers reloaded prepacked; their time. */
  pinnedLoads = 0;
  pinnedLoadSeconds = 0;

  private readonly bytes: number[];
  private readonly residentUnits: number[];
  /** The pinned units loaded on first use, not at open: all of them when layers stream; else none. */
  private readonly lazy: Set<number>;

  constructor(
    memory: MemoryPlan,
    /** `prepack`: whether onnxruntime prepacks the weights; a unit resident from open always does. */
    private readonly load: (unit: number, prepack: boolean) => Promise<S>,
    /** Whether a session run `runs` times is worth prepacking (`prepacksFor`). */
    private readonly prepacks: (runs: number) => boolean = () => true,
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
   *   at open, one after the other, the 8 pinned int8 layers of OLMoE-1B-7B at 6 GB took 31-66 s before
   *   the first token ran (runtime README, "Pinned layers on first use");
   * - the first pass loads a pinned layer as it loads a streamed one (unpacked where `prepacksFor` says
   *   so: a pass of a few batches does not win back prepacking's cost), and keeps it unpacked until the
   *   runs passes made of it, with the coming pass's, are worth prepacking; then that pass reloads it
   *   prepacked, for good. As in renting skis until the rent paid equals the price: work of one pass
   *   (a profile of 16k tokens) never pays for prepacking, work of many (a search) pays at most one
   *   extra unpacked load per pinned layer, and an evaluation of a few one-sequence passes neither;
   * - work without losses or logits (a profile) never needs the head (Qwen3-30B-A3B: 1.2 GB, seconds).
   * Loading one later is priced: a pass takes one unit at a time, so the streaming slot, which holds
   * twice a layer and twice the head, is empty when it loads (a reload first releases the unpacked one).
   */
  async open(): Promise<void> {
    for (const unit of this.residentUnits) if (!this.lazy.has(unit)) await this.loadResident(unit, true);
  }

  /**
   * Whether acquiring the unit for `runs` more runs loads it: it is streamed, or pinned and not loaded
   * yet, or loaded unpacked and now run often enough to be reloaded prepacked.
   */
  needsLoad(unit: number, runs = Infinity): boolean {
    const held = this.resident.get(unit);
    return !held || (!held.prepacked && this.prepacks(held.unpackedRuns + runs));
  }

  /** Whether acquiring the pinned unit now loads it for the first time (not a prepacked reload). */
  isUnloaded(unit: number): boolean {
    return !this.resident.has(unit);
  }

  /**
   * The layer's session for `runs` runs (default: many, so prepacked), loading it when it is not
   * resident; hand it back with `release`. A layer loaded now for this pass alone is prepacked when
   * `prepacks(runs)`; a pinned one as `open` says.
   */
  async acquire(layer: number, runs = Infinity): Promise<S> {
    const held = this.resident.get(layer);
    if (held?.prepacked) return held.session;
    if (!this.lazy.has(layer)) return this.timedLoad(layer, this.prepacks(runs));
    if (held && !this.needsLoad(layer, runs)) {
      held.unpackedRuns += runs;
      return held.session;
    }
    const started = performance.now();
    if (held) {
      // Run often enough now: the unpacked session goes (the slot is empty) and the layer is reloaded prepacked.
      this.resident.delete(layer);
      await held.session.release();
      held.unhold();
    }
    const packed = held !== undefined || this.prepacks(runs);
    const session = await this.loadResident(layer, packed, packed ? 0 : runs);
    this.pinnedLoads++;
    if (!packed) this.unpackedLoads++;
    this.pinnedLoadSeconds += (performance.now() - started) / 1000;
    return session;
  }

  private async loadResident(unit: number, prepacked: boolean, unpackedRuns = 0): Promise<S> {
    const held = await loadHeld(this.ledger, this.bytes[unit], () => this.load(unit, prepacked));
    this.resident.set(unit, { ...held, prepacked, unpackedRuns });
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
