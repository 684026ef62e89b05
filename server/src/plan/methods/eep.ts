/**
 * EEP, Efficient Expert Pruning (Liu et al., 2024, "Efficient Expert Pruning for Sparse Mixture-of-Experts
 * Language Models: Enhancing Performance and Reducing Inference Costs"): a gradient-free evolutionary
 * search over the router map W_RM and the expert merge matrix W_EM (both E' × E per layer), scored by a
 * task metric on a few calibration samples.
 *
 * Phase 1, pruning: W_RM = W_EM with one-hot rows, i.e. a kept subset; a mutation reassigns one row to
 * an expert the layer does not keep yet. Phase 2, merging: continuous W_RM and W_EM start from the
 * phase-1 best; children take each row (router and merge row together) from one of two elite parents,
 * then Gaussian noise (σ) on a share of the entries. Elitism keeps the best candidates every generation,
 * so the best fitness never falls.
 *
 * Reproducible from the seed: candidates are drawn before they are scored and scored one at a time, so
 * an asynchronous fitness (however long each call takes) cannot change the random stream.
 */
import type { RuntimePlan } from '../../runtime/runtimePlan';
import type { PlanLayer } from '../planFile';
import { SeededRandom } from '../prng';
import { oneHotRows, toRuntimePlan } from '../runtimeConversion';
import { type ExpertTarget, type MoeLayerShape, targetFor, throwIfAborted } from '../statistics';

/** Higher is better. Receives the candidate as the runtime runs it and as plan layers. */
export type FitnessFunction = (candidate: RuntimePlan, layers: PlanLayer[]) => Promise<number>;

export type EepPhase = 'prune' | 'merge';

export interface EepProgress {
  phase: EepPhase;
  generation: number;
  bestFitness: number;
  evaluations: number;
}

export interface EepParameters {
  populationSize: number;
  /** Generations per phase. */
  generations: number;
  eliteSize: number;
  /** Most fitness evaluations over both phases. */
  budget: number;
  seed: number;
  phases: EepPhase[];
  /** Standard deviation of the phase-2 Gaussian mutation. */
  sigma: number;
  /** Share of matrix entries a phase-2 mutation perturbs. */
  mutationRate: number;
}

export const DEFAULT_EEP_PARAMETERS: EepParameters = {
  populationSize: 16,
  generations: 20,
  eliteSize: 4,
  budget: 1000,
  seed: 0,
  phases: ['prune', 'merge'],
  sigma: 0.05,
  mutationRate: 0.1,
};

export interface EepOptions extends Partial<EepParameters> {
  layers: MoeLayerShape[];
  target: ExpertTarget;
  fitness: FitnessFunction;
  /** A starting subset per layer (e.g. a frequency plan) placed in the first population. */
  initial?: PlanLayer[];
  signal?: AbortSignal;
  onGeneration?: (progress: EepProgress) => void;
}

export interface EepResult {
  layers: PlanLayer[];
  fitness: number;
  evaluations: number;
  history: EepProgress[];
  parameters: EepParameters;
}

interface Scored {
  layers: PlanLayer[];
  fitness: number;
}

export async function eepSearch(options: EepOptions): Promise<EepResult> {
  const parameters: EepParameters = { ...DEFAULT_EEP_PARAMETERS, ...definedOnly(options) };
  const { populationSize, generations, budget, phases } = parameters;
  const eliteSize = Math.max(1, Math.min(parameters.eliteSize, populationSize));
  const random = new SeededRandom(parameters.seed);
  const shapes = options.layers.map((l) => ({ ...l, count: targetFor(options.target, l.layer, l.numExperts) }));
  const numExperts = new Map(shapes.map((s) => [s.layer, s.numExperts]));
  const history: EepProgress[] = [];
  const cache = new Map<string, number>();
  let evaluations = 0;

  const score = async (layers: PlanLayer[]): Promise<Scored | undefined> => {
    const key = JSON.stringify(layers.map((l) => l.routerMap ? [l.routerMap, l.mergeMatrix] : [...l.keptExperts].sort((a, b) => a - b)));
    const known = cache.get(key);
    if (known !== undefined) return { layers, fitness: known };
    if (evaluations >= budget) return undefined;
    throwIfAborted(options.signal);
    evaluations++;
    const fitness = await options.fitness(toRuntimePlan(layers, (layer) => numExperts.get(layer)!), layers);
    cache.set(key, fitness);
    return { layers, fitness };
  };
  const scoreAll = async (candidates: PlanLayer[][]) => {
    const scored: Scored[] = [];
    for (const candidate of candidates) {
      const result = await score(candidate);
      if (result) scored.push(result);
    }
    return scored;
  };
  const evolve = async (phase: EepPhase, first: PlanLayer[][], child: (elite: Scored[]) => PlanLayer[]) => {
    let population = rank(await scoreAll(first));
    if (population.length === 0) throw new Error('EEP: the evaluation budget is too small for one candidate');
    const report = (generation: number) => {
      const progress = { phase, generation, bestFitness: population[0].fitness, evaluations };
      history.push(progress);
      options.onGeneration?.(progress);
    };
    report(0);
    for (let generation = 1; generation <= generations && evaluations < budget; generation++) {
      const elite = population.slice(0, eliteSize);
      const children = Array.from({ length: populationSize - elite.length }, () => child(elite));
      population = rank([...elite, ...(await scoreAll(children))]);
      report(generation);
    }
    return population[0];
  };

  let best: Scored | undefined;
  if (phases.includes('prune')) {
    const first = Array.from({ length: populationSize }, (_, i) =>
      i === 0 && options.initial ? shapes.map((s) => ({ layer: s.layer, keptExperts: options.initial!.find((l) => l.layer === s.layer)!.keptExperts.slice() })) :
        shapes.map((s) => ({ layer: s.layer, keptExperts: random.sample(s.numExperts, s.count) })));
    best = await evolve('prune', first, (elite) => mutateSubset(elite[random.int(elite.length)].layers, shapes, random));
  }
  if (phases.includes('merge')) {
    const from: PlanLayer[] = best?.layers ?? options.initial ?? shapes.map((s) => ({ layer: s.layer, keptExperts: random.sample(s.numExperts, s.count) }));
    const start = from.map((l) => ({ layer: l.layer, keptExperts: l.keptExperts.slice(), routerMap: l.routerMap ?? oneHotRows(l.keptExperts, numExperts.get(l.layer)!), mergeMatrix: l.mergeMatrix ?? oneHotRows(l.keptExperts, numExperts.get(l.layer)!) }));
    const perturb = (layers: PlanLayer[]) => layers.map((l) => ({ ...l, routerMap: gaussian(l.routerMap!, parameters, random), mergeMatrix: gaussian(l.mergeMatrix!, parameters, random) }));
    const first = [start, ...Array.from({ length: populationSize - 1 }, () => perturb(start))];
    best = await evolve('merge', first, (elite) => perturb(crossRows(elite[random.int(elite.length)].layers, elite[random.int(elite.length)].layers, random)));
  }
  if (!best) throw new Error('EEP: no phase to run');
  return { layers: canonical(best.layers), fitness: best.fitness, evaluations, history, parameters };
}

function definedOnly(options: Partial<EepParameters>): Partial<EepParameters> {
  const keys = Object.keys(DEFAULT_EEP_PARAMETERS) as (keyof EepParameters)[];
  return Object.fromEntries(keys.filter((k) => options[k] !== undefined).map((k) => [k, options[k]]));
}

/** Best first; equal fitness keeps the earlier candidate first (elites before children). */
function rank(population: Scored[]): Scored[] {
  return population.map((s, i) => ({ s, i })).sort((a, b) => b.s.fitness - a.s.fitness || a.i - b.i).map(({ s }) => s);
}

function mutateSubset(parent: PlanLayer[], shapes: { layer: number; numExperts: number }[], random: SeededRandom): PlanLayer[] {
  const child = parent.map((l) => ({ layer: l.layer, keptExperts: l.keptExperts.slice() }));
  const candidates = child.flatMap((l, i) => (l.keptExperts.length < shapes[i].numExperts ? [i] : []));
  if (candidates.length === 0) return child;
  const index = candidates[random.int(candidates.length)];
  const kept = child[index].keptExperts;
  const unused = Array.from({ length: shapes[index].numExperts }, (_, j) => j).filter((j) => !kept.includes(j));
  kept[random.int(kept.length)] = unused[random.int(unused.length)];
  return child;
}

function crossRows(a: PlanLayer[], b: PlanLayer[], random: SeededRandom): PlanLayer[] {
  return a.map((layer, index) => {
    const other = b[index];
    const fromB = layer.keptExperts.map(() => random.next() < 0.5);
    return {
      ...layer,
      routerMap: layer.routerMap!.map((row, i) => (fromB[i] ? other.routerMap![i] : row).slice()),
      mergeMatrix: layer.mergeMatrix!.map((row, i) => (fromB[i] ? other.mergeMatrix![i] : row).slice()),
    };
  });
}

function gaussian(matrix: number[][], parameters: EepParameters, random: SeededRandom): number[][] {
  return matrix.map((row) => row.map((x) => (random.next() < parameters.mutationRate ? x + parameters.sigma * random.normal() : x)));
}

/** Prune-only results list kept experts ascending; merged rows keep their phase-1 labels in order. */
function canonical(layers: PlanLayer[]): PlanLayer[] {
  return layers.map((l) => (l.routerMap ? l : { layer: l.layer, keptExperts: [...l.keptExperts].sort((a, b) => a - b) }));
}
