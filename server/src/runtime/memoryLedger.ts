/**
 * The engine's own account of what it holds, in the memory plan's terms (not the process's RSS, which
 * the OS and onnxruntime's arenas blur): the fixed parts, loaded layer and merged sessions (twice their
 * weights while they load: the external data file and the prepacked copy), one batch's work while it
 * runs, and the hidden states and cached prefixes in RAM. Its peak is what tests hold against the budget,
 * so a pass that builds more at once than the plan priced (every variant's merged layer, say) shows.
 */
export class MemoryLedger {
  private held = 0;
  private peakBytes = 0;
  private readonly live: (() => number)[] = [];

  /** Bytes held now (the live sources included) and the most ever held. */
  get current(): number {
    return this.held + this.live.reduce((sum, bytes) => sum + bytes(), 0);
  }

  get peak(): number {
    return Math.max(this.peakBytes, this.current);
  }

  /** Holds `bytes` until the returned function is called (once; later calls do nothing). */
  hold(bytes: number): () => void {
    this.add(bytes);
    let holding = true;
    return () => {
      if (!holding) return;
      holding = false;
      this.add(-bytes);
    };
  }

  /** A source whose size changes on its own (a cache); sampled whenever something else changes. */
  watch(bytes: () => number): void {
    this.live.push(bytes);
  }

  add(bytes: number): void {
    this.held += bytes;
    this.peakBytes = Math.max(this.peakBytes, this.current);
  }
}

/** Loads a session while holding twice its weights, then holds them once until `release`. */
export async function loadHeld<S>(ledger: MemoryLedger, weightBytes: number, load: () => Promise<S>): Promise<{ session: S; unhold: () => void }> {
  const loading = ledger.hold(2 * weightBytes);
  let session: S;
  try {
    session = await load();
  } finally {
    loading();
  }
  return { session, unhold: ledger.hold(weightBytes) };
}
