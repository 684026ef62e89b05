/**
 * The choices of "Generate pruning plan", without the editor API, so their order and wording are
 * tested as data: the method (Enter picks REAP, the fast method with good quality), how many experts
 * (per layer, or a global budget the server shares out by measured loss), and the repair after the
 * method (none unless asked for).
 */
import type { GenerateMethodName } from '../../../common/protocol';

export interface MethodChoice {
  method: GenerateMethodName;
  label: string;
  detail: string;
  parameters?: Record<string, unknown>;
}

/** Fast methods with good quality first (Enter picks REAP); the search methods, slowest, last. */
export const METHODS: MethodChoice[] = [
  { method: 'reap', label: 'REAP', detail: 'Drops the experts with the lowest mean gate × ‖expert output‖ over routed tokens. Fast (one pass over the calibration data), good quality.' },
  { method: 'frequency', label: 'Frequency', detail: 'Keeps the experts routed to most often on the calibration data. Fastest.' },
  { method: 'softCount', label: 'Soft count', detail: 'Keeps the experts with the largest sum of gate weights.' },
  { method: 'naee', label: 'NAEE (subset search)', detail: "Per layer, the kept subset that best reconstructs the layer's output on calibration tokens." },
  { method: 'uncurl', label: 'UNCURL (cluster and merge)', detail: 'Clusters experts by router-logit similarity on the task, keeps the most used per cluster and merges the rest into it.' },
  {
    method: 'uncurl',
    label: 'UNCURL, centred logits',
    detail: 'UNCURL clustering on the correlation of router logits: for tasks that use only a few experts, which plain UNCURL would merge into one.',
    parameters: { similarity: 'correlation' },
  },
  { method: 'eep', label: 'EEP (evolutionary search)', detail: 'Gradient-free search over router mapping and expert merging; fitness is task quality on calibration samples. Best quality, slowest (minutes).' },
  { method: 'random', label: 'Random (baseline)', detail: 'A seeded random subset: the floor every method should beat.' },
  { method: 'adaptiveGating', label: 'Adaptive gating (keeps every expert)', detail: 'A token runs only its first expert when its router is confident (p1 − p2 > T): fewer active parameters per token, same memory.' },
];

/** Adaptive gating's target: a share of single-expert tokens, or a bound on the calibration loss. */
export const GATING_TARGETS: { label: string; detail: string; singleExpertShare?: number; maxLossIncrease?: number }[] = [
  ...[0.5, 0.7, 0.9].map((share) => ({ label: `${100 * share}% of tokens on one expert`, detail: 'Per layer, the threshold that reaches this share on the calibration data.', singleExpertShare: share })),
  ...[0.01, 0.02, 0.05].map((bound) => ({ label: `At most +${bound} nats of loss`, detail: 'Per layer, the smallest threshold that keeps the calibration loss within an equal part of this bound (measured, a few forwards per layer).', maxLossIncrease: bound })),
];

export interface CountChoice {
  label: string;
  description: string;
  detail?: string;
  /** Experts every layer keeps, or (with `keepShare`) none: the server shares out a global budget. */
  count?: number;
  keepShare?: number;
  /** The plan file's name part. */
  name: string;
}

/** Global budgets offered after the per-layer counts. */
const KEEP_SHARES = [0.75, 0.5, 0.25];

/**
 * Per-layer counts from E − 1 down to 1, then global budgets (a share of all experts, counts per
 * layer by measured loss). Only UNCURL's counts carry UNCURL's threshold: it is about merging.
 */
export function countChoices(method: GenerateMethodName, numExperts: number, moeLayers: number, topK = 1): CountChoice[] {
  const E = numExperts;
  const threshold = E >= 64 ? 2 : 4;
  const perLayer: CountChoice[] = Array.from({ length: E - 1 }, (_, i) => E - 1 - i).map((count) => ({
    label: `Keep ${count} of ${E} experts per layer`,
    description: `${(E / count).toFixed(1)}× fewer experts`,
    detail: method === 'uncurl' && E / count > threshold ? `$(warning) Past UNCURL's threshold (~${threshold}×): expect quality to drop` : undefined,
    count,
    name: `keep${count}`,
  }));
  const all = E * moeLayers;
  // A budget below every layer's minimum (its top-k) is raised to it by the server; offer only those it keeps.
  const shares: CountChoice[] = KEEP_SHARES.filter((share) => Math.round(share * all) >= Math.min(topK, E) * moeLayers && Math.round(share * all) < all).map((share) => ({
    label: `Keep ${100 * share}% of all experts, counts per layer by measured loss`,
    description: `${Math.round(share * all)} of ${all} experts in ${moeLayers} layers`,
    detail: "A global budget: each layer's calibration loss is measured at every count first (slower), then experts go where they cost most to remove. Exact in MoE Studio's loader; stock loaders need one count in every layer.",
    keepShare: share,
    name: `share${100 * share}`,
  }));
  return [...perLayer, ...shares];
}

export interface RepairChoice {
  label: string;
  detail: string;
  repairs: ('routerRefit' | 'outputCompensation')[];
}

/** Closed-form repairs after the method (docs/plan-format.md, "Repairs"); none first, so Enter keeps the method's plan. */
export const REPAIR_CHOICES: RepairChoice[] = [
  { label: 'No repair', detail: "The method's plan as it is.", repairs: [] },
  { label: 'Output compensation', detail: "Rescales each kept expert's output by least squares so the layer's output stays close to the full model's. Helps most when few experts are kept.", repairs: ['outputCompensation'] },
  { label: 'Router refit + output compensation', detail: 'Also refits the kept router rows so each kept expert gets the probability of the experts it stands in for, then compensates.', repairs: ['routerRefit', 'outputCompensation'] },
];
