/** Byte sizes as people read them, in the unit that fits (binary, so named KiB/MiB/GiB), the same in the extension's messages, the panels and the model card. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 ** 2) return `${(bytes / 1024).toFixed(1)} KiB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
}

/** Evaluation metrics by name, as the preview, the messages and the model card show them (plan files keep the ids). */
const METRIC_LABELS: Record<string, string> = {
  loss: 'loss (nats/token)',
  perplexity: 'perplexity',
  kl: 'KL divergence from the full model (nats/token)',
  top1Agreement: 'top-1 agreement with the full model',
  accuracy: 'accuracy',
};

export function metricLabel(metric: string): string {
  return Object.hasOwn(METRIC_LABELS, metric) ? METRIC_LABELS[metric] : metric;
}

/**
 * Whether the plan's value is a large quality drop from the full model's: accuracy or top-1 agreement
 * down by more than a tenth of its value, loss up by more than 10% (perplexity, its exponential, by more
 * than 25%: about what +10% of a typical loss of 2 nats gives), or a KL divergence
 * over 0.1 nats per token (the full model's is 0). A reader must not miss these in a table of figures.
 */
export function isLargeQualityDrop(metric: string, value: number, baseline?: number): boolean {
  if (metric === 'kl') return value > 0.1;
  if (baseline === undefined || !Number.isFinite(baseline) || baseline === 0) return false;
  if (metric === 'accuracy' || metric === 'top1Agreement') return value < 0.9 * baseline;
  if (metric === 'loss') return value > 1.1 * baseline;
  if (metric === 'perplexity') return value > 1.25 * baseline;
  return false;
}

/** "8 experts", or "4–8 experts" when MoE layers keep different counts (an export with per-layer counts). */
export function formatExpertCounts(counts: readonly number[]): string {
  const low = Math.min(...counts);
  const high = Math.max(...counts);
  return low === high ? `${high} experts` : `${low}–${high} experts`;
}
