/**
 * What the editor knows about each plan method: a one-line summary and the parameters `method.parameters`
 * may hold, with defaults and descriptions, for completion. The names are generatePlan's; the random
 * seed of every method is `method.seed`, not a parameter.
 */
import { DEFAULT_EEP_PARAMETERS, type MethodName } from '../../plan';
import { DEFAULT_EXHAUSTIVE_LIMIT } from '../../plan/methods/naee';
import { UNCURL_DEFAULTS } from '../../plan/methods/uncurl';
import { DEFAULT_EEP_SAMPLES } from '../../plan/run/calibration';

export interface MethodParameter {
  name: string;
  description: string;
  /** The value completion inserts; for counts, scaled to the layer's E. */
  defaultValue: (numExperts: number) => unknown;
}

export interface MethodInfo {
  summary: string;
  parameters: MethodParameter[];
}

const targetExperts: MethodParameter = {
  name: 'targetExperts',
  description: 'Experts each MoE layer keeps (E′): one number for every layer, or an object from layer index to count.',
  defaultValue: (numExperts) => Math.max(1, Math.floor(numExperts / 2)),
};

const singleExpertShare: MethodParameter = {
  name: 'singleExpertShare',
  description: 'Adaptive gating on top of the method: per-layer thresholds so that this share of tokens (0..1) runs only its first expert.',
  defaultValue: () => 0.5,
};

const keepShare: MethodParameter = {
  name: 'keepShare',
  description:
    'Instead of `targetExperts`: a global expert budget, this share (0 < x ≤ 1) of all routed experts, shared out across layers by each layer\'s measured calibration loss at every count, so layers differ in how many they keep. The plan records `expertBudget`; the export is exact in MoE Studio\'s loader, while stock loaders need one count in every layer. CLI: `--keep-share`.',
  defaultValue: () => 0.5,
};

const repairs: MethodParameter = {
  name: 'repairs',
  description:
    'Closed-form repairs after the method, fitted on the calibration tokens: `"routerRefit"` (kept router rows refitted by least squares so each kept expert gets the probability of the experts it stands in for; writes `routerMap`) and `"outputCompensation"` (least-squares scales of the kept experts\' outputs; writes `outputScale`). CLI: `--repair routerRefit,outputCompensation`.',
  defaultValue: () => ['outputCompensation'],
};

const constant = (value: unknown) => () => value;

const eep = DEFAULT_EEP_PARAMETERS;

export const METHODS: Record<MethodName, MethodInfo> = {
  manual: { summary: 'Written by hand: no method made the layers.', parameters: [] },
  random: { summary: 'Baseline: keeps a random subset per layer, drawn from `method.seed`.', parameters: [targetExperts, keepShare, repairs, singleExpertShare] },
  frequency: { summary: 'Keeps the experts most often in a token\'s top-k (hard counts, SEER-MoE).', parameters: [targetExperts, keepShare, repairs, singleExpertShare] },
  softCount: { summary: 'Keeps the experts with the largest summed gate weights (soft counts, SEER-MoE).', parameters: [targetExperts, keepShare, repairs, singleExpertShare] },
  reap: { summary: 'Keeps the experts with the highest REAP saliency, mean gate × ‖expert output‖ (Lasby et al. 2025).', parameters: [targetExperts, keepShare, repairs, singleExpertShare] },
  naee: {
    summary: 'Keeps the subset with the least layer reconstruction error (Lu et al. 2024): exhaustive when small, else greedy.',
    parameters: [
      targetExperts,
      keepShare,
      { name: 'exhaustiveLimit', description: 'Search every subset when C(E, E′) is at most this; otherwise greedy backward elimination.', defaultValue: constant(DEFAULT_EXHAUSTIVE_LIMIT) },
      repairs,
      singleExpertShare,
    ],
  },
  uncurl: {
    summary: 'Merges experts by spectral clustering of router logits, weighted by usage (Sarkar et al. 2024), each merged expert\'s neurons first aligned to the survivor\'s.',
    parameters: [
      targetExperts,
      keepShare,
      { name: 'restarts', description: 'k-means restarts per layer; the best clustering wins.', defaultValue: constant(UNCURL_DEFAULTS.restarts) },
      {
        name: 'similarity',
        description: '"cosine" of the experts\' router-logit columns (the paper), or "correlation": the same columns centred first, which keeps apart experts that split a task\'s tokens between them instead of merging every expert the task uses.',
        defaultValue: constant(UNCURL_DEFAULTS.similarity),
      },
      {
        name: 'neuronAlignment',
        description:
          'Before an expert is merged into its cluster\'s survivor, renumber its intermediate neurons to best match the survivor\'s (Hungarian assignment on the cosine of each neuron\'s gate row, up row and down column), so the merge averages matched neurons; renumbering leaves the expert\'s function unchanged. Writes `neuronOrder`. `false` merges neuron k with neuron k. Layers with fused or quantised (MXFP4, FP8) experts, or more than 4096 intermediate neurons, merge unaligned and the plan says why (`neuronAlignmentSkipped`). CLI: `--no-neuron-alignment`.',
        defaultValue: constant(UNCURL_DEFAULTS.neuronAlignment),
      },
      repairs,
      singleExpertShare,
    ],
  },
  eep: {
    summary: 'Evolutionary search over router and merge matrices, scored by a task metric (Liu et al. 2024).',
    parameters: [
      targetExperts,
      keepShare,
      { name: 'populationSize', description: 'Candidates per generation.', defaultValue: constant(eep.populationSize) },
      { name: 'generations', description: 'Most generations per phase; 0 (the default): as many as the phase\'s equal share of the budget pays for.', defaultValue: constant(eep.generations) },
      { name: 'eliteSize', description: 'Best candidates carried into the next generation unchanged.', defaultValue: constant(eep.eliteSize) },
      { name: 'budget', description: 'Most fitness evaluations over both phases.', defaultValue: constant(eep.budget) },
      { name: 'phases', description: '"prune" (one-hot subsets), then "merge" (continuous matrices from the best subset).', defaultValue: constant(eep.phases) },
      { name: 'sigma', description: 'Standard deviation of the merge-phase Gaussian mutation.', defaultValue: constant(eep.sigma) },
      { name: 'mutationRate', description: 'Share of matrix entries a merge-phase mutation perturbs.', defaultValue: constant(eep.mutationRate) },
      { name: 'samples', description: 'Calibration sequences (or multiple-choice items) the fitness scores.', defaultValue: constant(DEFAULT_EEP_SAMPLES) },
      { name: 'significance', description: 'Standard errors (paired, over calibration samples) by which a candidate must beat the plan so far to replace it; 0 takes any gain.', defaultValue: constant(eep.significance) },
      {
        name: 'neuronAlignment',
        description:
          'Before a merge-phase row averages experts, renumber each merged expert\'s intermediate neurons to best match a kept expert\'s (Hungarian assignment on the cosine of each neuron\'s gate row, up row and down column): the kept expert whose router row is most like its own (where pruning sends its tokens). Kept experts are never renumbered; each merged expert is aligned once per search. Writes `neuronOrder`. `false` merges neuron k with neuron k. Layers with fused or quantised (MXFP4, FP8) experts, or more than 4096 intermediate neurons, merge unaligned and the plan says why (`neuronAlignmentSkipped`). CLI: `--no-neuron-alignment`.',
        defaultValue: constant(eep.neuronAlignment),
      },
      repairs,
      singleExpertShare,
    ],
  },
  adaptiveGating: {
    summary: 'Keeps every expert; a token skips the experts after its first when its router is confident (Li et al. 2023).',
    parameters: [
      { ...singleExpertShare, description: 'Per-layer thresholds so that this share of tokens (0..1) runs only its first expert.' },
      { name: 'maxLossIncrease', description: 'Instead of a share: per layer the smallest threshold whose calibration loss rises by at most its equal part of this many nats.', defaultValue: () => 0.02 },
    ],
  },
};

export function methodInfo(name: string | undefined): MethodInfo | undefined {
  return name !== undefined && Object.hasOwn(METHODS, name) ? METHODS[name as MethodName] : undefined;
}
