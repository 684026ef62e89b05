/** Byte sizes as people read them, the same in the extension's messages and in the panels. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 ** 2) return `${(bytes / 1024).toFixed(1)} KB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 ** 2).toFixed(1)} MB`;
  return `${(bytes / 1024 ** 3).toFixed(2)} GB`;
}

/** "8 experts", or "4–8 experts" when MoE layers keep different counts (an export with per-layer counts). */
export function formatExpertCounts(counts: readonly number[]): string {
  const low = Math.min(...counts);
  const high = Math.max(...counts);
  return low === high ? `${high} experts` : `${low}–${high} experts`;
}
