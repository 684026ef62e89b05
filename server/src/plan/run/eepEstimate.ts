/**
 * The shape of an EEP search as the estimate needs it, from its parameters alone: how many passes the
 * search makes over the calibration sequences, how many candidates ride in each, and how many merged
 * layers its merge phase builds (each candidate merges every MoE layer, so each is a layer built).
 */
import type { WorkShape } from '../../runtime';
import { DEFAULT_EEP_PARAMETERS, type EepParameters } from '../methods/eep';
import { alignNeurons, type AlignmentSource, MAX_ALIGNED_NEURONS } from '../methods/neuronAlignment';

export interface EepWork {
  /** Generations over both phases: one pass each (the whole population scored together). */
  passes: number;
  /** Candidates scored over the whole search (at most the budget). */
  evaluations: number;
  /** Merged layers built: merge-phase candidates x MoE layers. */
  mergedLayerBuilds: number;
}

/**
 * Mirrors eepSearch's bookkeeping: each phase gets an equal share of what the budget has left, the
 * first population (up to populationSize) may use the whole remaining budget, later generations score
 * populationSize - eliteSize children each. Assumes no candidate repeats (a repeat is free), so this is
 * an upper bound.
 */
export function eepWork(parameters: Partial<EepParameters>, moeLayers: number): EepWork {
  const { budget, populationSize, eliteSize, phases, generations } = { ...DEFAULT_EEP_PARAMETERS, ...parameters };
  const children = Math.max(1, populationSize - Math.min(Math.max(1, eliteSize), populationSize - 1));
  const ordered = phases.filter((p) => p === 'prune' || p === 'merge');
  let evaluations = 0;
  let passes = 0;
  let mergedLayerBuilds = 0;
  ordered.forEach((phase, i) => {
    const phaseEnd = evaluations + Math.floor((budget - evaluations) / (ordered.length - i));
    let scored = Math.min(populationSize, budget - evaluations);
    const count = (n: number) => {
      if (n <= 0) return;
      passes++;
      evaluations += n;
      if (phase === 'merge') mergedLayerBuilds += n * moeLayers;
    };
    count(scored);
    for (let generation = 1; (generations <= 0 || generation <= generations) && evaluations < phaseEnd; generation++) {
      scored = Math.min(children, budget - evaluations);
      count(scored);
    }
  });
  return { passes, evaluations, mergedLayerBuilds };
}

/**
 * A merge like the merge phase's candidates: `rows` kept experts, each its own expert plus the entries
 * a Gaussian mutation at `mutationRate` makes nonzero (so a build reads as many experts as theirs do).
 */
export function typicalMergeMatrix(rows: number, experts: number, mutationRate = DEFAULT_EEP_PARAMETERS.mutationRate): number[][] {
  const every = Math.max(1, Math.round(1 / Math.max(mutationRate, 1e-9)));
  return Array.from({ length: rows }, (_, r) => Array.from({ length: experts }, (_, e) => (e === r ? 1 : (e + r) % every === 0 ? 0.05 : 0)));
}

/** The estimate's work shape of a search: every pass's candidates side by side, the merge phase's builds. */
export function eepWorkShape(work: EepWork, keptExperts: number, numExperts: number): Pick<WorkShape, 'variants' | 'repeats' | 'merges'> {
  return {
    variants: work.passes > 0 ? work.evaluations / work.passes : 1,
    repeats: Math.max(1, work.passes),
    ...(work.mergedLayerBuilds > 0 ? { merges: { builds: work.mergedLayerBuilds, matrix: typicalMergeMatrix(keptExperts, numExperts) } } : {}),
  };
}

/**
 * Neuron alignment in the merge phase (eepAlignment.ts): every expert a layer does not keep is aligned
 * once per search to a kept one, so E − E′ assignments per MoE layer that the source does not refuse
 * (fused or quantised experts, or more intermediate neurons than MAX_ALIGNED_NEURONS).
 */
export function eepAlignmentPairs(layers: { layer: number; numExperts: number; intermediate: number }[], keptExperts: number, refusal: (layer: number) => string | undefined): number {
  return layers.reduce((sum, { layer, numExperts, intermediate }) => (refusal(layer) || intermediate > MAX_ALIGNED_NEURONS ? sum : sum + Math.max(0, numExperts - keptExperts)), 0);
}

/**
 * Seconds the merge phase's alignment takes, from one measured assignment (reading the member expert
 * and aligning it to another): on OLMoE-1B-7B's I = 1024 one assignment is seconds, and 16 layers of
 * 56 unkept experts make hundreds of them, which the search's estimate would otherwise leave out.
 */
export async function measureEepAlignment(source: AlignmentSource, layers: { layer: number; numExperts: number; intermediate: number }[], keptExperts: number): Promise<{ pairs: number; seconds: number } | undefined> {
  const pairs = eepAlignmentPairs(layers, keptExperts, (layer) => source.refusal(layer));
  const sample = layers.find(({ layer, intermediate, numExperts }) => numExperts > 1 && !source.refusal(layer) && intermediate <= MAX_ALIGNED_NEURONS);
  if (pairs === 0 || !sample) return undefined;
  const anchor = await source.expert(sample.layer, 0);
  const started = performance.now();
  alignNeurons(anchor, await source.expert(sample.layer, 1), sample.intermediate, source.hidden);
  return { pairs, seconds: (pairs * (performance.now() - started)) / 1000 };
}
