/**
 * A string-keyed map that drops its least recently used entries once their bytes pass a budget (a Map keeps
 * insertion order, so touching an entry re-inserts it). An entry larger than the whole budget is not kept.
 */
export class ByteBudgetCache<V> {
  private readonly entries = new Map<string, V>();
  private bytes = 0;

  constructor(
    private readonly budgetBytes: number,
    private readonly sizeOf: (value: V) => number,
  ) {}

  /** Bytes of the entries kept. */
  get size(): number {
    return this.bytes;
  }

  /** The entry under `key`, now the most recently used. */
  get(key: string): V | undefined {
    const value = this.entries.get(key);
    if (value !== undefined) {
      this.entries.delete(key);
      this.entries.set(key, value);
    }
    return value;
  }

  /** Keeps `value` unless `key` is already there or it alone exceeds the budget; evicts the oldest beyond it. */
  set(key: string, value: V): void {
    const size = this.sizeOf(value);
    if (this.entries.has(key) || size > this.budgetBytes) return;
    this.entries.set(key, value);
    this.bytes += size;
    for (const [oldest, old] of this.entries) {
      if (this.bytes <= this.budgetBytes) break;
      this.entries.delete(oldest);
      this.bytes -= this.sizeOf(old);
    }
  }

  clear(): void {
    this.entries.clear();
    this.bytes = 0;
  }
}
