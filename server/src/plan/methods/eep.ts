/**
 * EEP, Efficient Expert Pruning (Liu et al., 2024, "Efficient Expert Pruning for Sparse Mixture-of-Experts
 * Language Models: Enhancing Performance and Reducing Inference Costs"): a gradient-free evolutionary
 * search over the router map W_RM and the expert merge matrix W_EM (both E' × E per layer), scored by a
 * task metric on a few calibration samples.
 *
 * Phase 1, pruning: W_RM = W_EM with one-hot rows, i.e. a kept subset; a mutation reassigns one row to
 * an expert the layer does not keep yet. Phase 2, merging: continuous W_RM and W_EM; children take each
 * row (router and merge row together) from one of two elite parents, then Gaussian noise (σ) on a share
 * of the entries. Elitism keeps the best candidates every generation, so the best fitness never falls.
 *
 * Seeding (our addition; we do not attribute it to the paper): `initial` solutions, in practice the
 * pruning heuristics computed from the calibration statistics (frequency, soft count, REAP, NAEE), open
 * the first population, and the rest of it is one- or two-swap mutations of them. A search from random
 * subsets spends a small budget climbing back to what a heuristic gives for free (on the demo model it
 * ended below frequency and REAP); started from the best known solutions it can only refine them.
 * Phase 2 starts from phase 1's result as an identity merge (one-hot W_RM = W_EM: the function the
 * pruned model computes, carried over with its fitness) and its perturbations, so merging can only
 * raise the calibration fitness; when it does not, the prune-only plan is returned.
 *
 * Significant gains only (our addition): the search ranks its population by mean fitness, but the plan it
 * returns (per phase) changes only when a candidate beats it by `significance` standard errors of the
 * paired per-sample differences, when the fitness reports per-sample scores. A few calibration rows
 * rank near-equal candidates by noise; on the demo model, plans that won on the 48 calibration rows by
 * a few thousandths of a nat lost on the held-out rows. Without per-sample scores any gain counts.
 * The first candidate scored (the first seed, else a random subset) is where the returned plan starts;
 * with `significance` 0 the result's fitness is at least every seed's.
 *
 * The budget is the search's length (our addition): each phase gets an equal share of the evaluations
 * left when it starts (phase 2 also inherits what phase 1 did not spend), and runs generations until that
 * share is spent; `generations` (> 0) only caps them. A generation whose every child was scored before
 * spends nothing; three such generations in a row end the phase (the population has converged), so a
 * cached search cannot spin. Before, 20 generations per phase stopped a 1,000-evaluation search at about
 * 500 evaluations.
 *
 * Neuron alignment (our addition, the default): before a merge-phase row averages experts, each merged
 * expert is renumbered to match a kept expert (the one whose router row is most like its own), and the
 * candidate carries the orders as `neuronOrder` (the rule, and why it costs nothing per candidate, in
 * eepAlignment.ts). It needs the experts' weights
 * (`alignment`); without them, or with `neuronAlignment: false`, rows average neuron k with neuron k.
 *
 * Reproducible from the seed: candidates are drawn before they are scored and scored one at a time, so
 * an asynchronous fitness (however long each call takes) cannot change the random stream.
 */
import type { RuntimePlan } from '../../runtime/runtimePlan';
import type { PlanLayer } from '../planFile';
import { EepAlignment } from './eepAlignment';
import type { AlignmentSource } from './neuronAlignment';
import { SeededRandom } from '../prng';
import { oneHotRows, toRuntimePlan } from '../runtimeConversion';
import { type ExpertTarget, type MoeLayerShape, targetFor, throwIfAborted } from '../statistics';

/**
 * A fitness with its per-sample parts (each calibration sequence's or item's share; they sum to
 * `value`), so that two candidates can be compared sample by sample.
 */
export interface FitnessScore {
  value: number;
  samples: ArrayLike<number>;
}

/** Higher is better. Receives the candidate as the runtime runs it and as plan layers. */
export type FitnessFunction = (candidate: RuntimePlan, layers: PlanLayer[]) => Promise<number | FitnessScore>;

/** A whole generation's fitness at once, in order (one pass over the model for the population). */
export type FitnessManyFunction = (candidates: RuntimePlan[]) => Promise<(number | FitnessScore)[]>;

export type EepPhase = 'prune' | 'merge';

export interface EepProgress {
  phase: EepPhase;
  generation: number;
  /** The fitness of the plan the search would return now (see `significance`). */
  bestFitness: number;
  /** The best candidate's fitness; above `bestFitness` when its lead is within the calibration noise. */
  candidateFitness: number;
  evaluations: number;
}

export interface EepParameters {
  populationSize: number;
  /** Most generations per phase; 0: as many as the phase's share of the budget pays for. */
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
  /**
   * Standard errors of the paired per-sample differences by which a candidate must beat the plan to
   * be returned instead of it (0: any gain). Needs a fitness with per-sample scores.
   */
  significance: number;
  /**
   * Renumber merged experts' neurons to match a kept expert's (eepAlignment.ts). Takes effect
   * only with `alignment`; the result records whether it did.
   */
  neuronAlignment: boolean;
}

export const DEFAULT_EEP_PARAMETERS: EepParameters = {
  populationSize: 16,
  generations: 0,
  eliteSize: 4,
  budget: 1000,
  seed: 0,
  phases: ['prune', 'merge'],
  sigma: 0.05,
  mutationRate: 0.1,
  significance: 2,
  neuronAlignment: true,
};

export interface EepOptions extends Partial<EepParameters> {
  layers: MoeLayerShape[];
  target: ExpertTarget;
  fitness: FitnessFunction;
  /** When given, each generation's new candidates are scored by one call (same results and order as `fitness`). */
  fitnessMany?: FitnessManyFunction;
  /**
   * Known solutions (e.g. the frequency, REAP and NAEE plans) that open the first population; the rest
   * of it is mutations of them. Prune-only plans seed phase 1; a merge-only search starts from them as
   * identity merges (or from their own matrices).
   */
  initial?: PlanLayer[][];
  /** The experts' weights, for the merge phase's neuron alignment (shared by searches that pass the same source). */
  alignment?: AlignmentSource;
  signal?: AbortSignal;
  onGeneration?: (progress: EepProgress) => void;
}

export interface EepResult {
  layers: PlanLayer[];
  fitness: number;
  /** Phase 1's best (prune-only), when phase 1 ran. */
  pruned?: { layers: PlanLayer[]; fitness: number };
  evaluations: number;
  history: EepProgress[];
  parameters: EepParameters;
  /** Layers the merge phase merged unaligned, with the reason (fused or quantised experts, too many neurons). */
  neuronAlignmentSkipped?: Record<number, string>;
}

interface Scored {
  layers: PlanLayer[];
  fitness: number;
  samples?: ArrayLike<number>;
}

export async function eepSearch(options: EepOptions): Promise<EepResult> {
  const requested: EepParameters = { ...DEFAULT_EEP_PARAMETERS, ...definedOnly(options) };
  const parameters: EepParameters = { ...requested, neuronAlignment: requested.neuronAlignment && options.alignment !== undefined };
  const alignment = parameters.neuronAlignment ? new EepAlignment(options.alignment!, options.signal) : undefined;
  /** A candidate as it is scored and returned: merged layers with their neuron orders. */
  const aligned = async (layers: PlanLayer[]) => (alignment ? alignment.attach(layers) : layers);
  const { populationSize, generations, budget, phases } = parameters;
  const eliteSize = Math.max(1, Math.min(parameters.eliteSize, populationSize));
  const random = new SeededRandom(parameters.seed);
  const shapes = options.layers.map((l) => ({ ...l, count: targetFor(options.target, l.layer, l.numExperts) }));
  const numExperts = new Map(shapes.map((s) => [s.layer, s.numExperts]));
  const history: EepProgress[] = [];
  const cache = new Map<string, Omit<Scored, 'layers'>>();
  let evaluations = 0;
  /** The plan this phase returns: replaced only by a significantly better candidate. */
  let incumbent: Scored | undefined;
  const consider = (candidate: Scored) => {
    if (!incumbent || significantlyBetter(candidate, incumbent, parameters.significance)) incumbent = candidate;
  };

  /** Scores an aligned candidate (or finds it in the cache). */
  const score = async (layers: PlanLayer[]): Promise<Scored | undefined> => {
    const key = cacheKey(layers);
    const known = cache.get(key);
    if (known !== undefined) return { layers, ...known };
    if (evaluations >= budget) return undefined;
    throwIfAborted(options.signal);
    evaluations++;
    const result = await options.fitness(toRuntimePlan(layers, (layer) => numExperts.get(layer)!), layers);
    const scored: Scored = typeof result === 'number' ? { layers, fitness: result } : { layers, fitness: result.value, samples: result.samples };
    cache.set(key, { fitness: scored.fitness, samples: scored.samples });
    consider(scored);
    return scored;
  };
  const scoreAll = async (drawn: PlanLayer[][]) => {
    const candidates: PlanLayer[][] = [];
    for (const layers of drawn) candidates.push(await aligned(layers));
    if (options.fitnessMany) {
      // The candidates `score` would evaluate, in its order, scored together; `score` then finds them cached.
      const fresh = new Map<string, PlanLayer[]>();
      for (const layers of candidates) {
        const key = cacheKey(layers);
        if (!cache.has(key) && !fresh.has(key) && evaluations + fresh.size < budget) fresh.set(key, layers);
      }
      throwIfAborted(options.signal);
      const results = fresh.size > 0 ? await options.fitnessMany([...fresh.values()].map((layers) => toRuntimePlan(layers, (layer) => numExperts.get(layer)!))) : [];
      [...fresh].forEach(([key, layers], i) => {
        evaluations++;
        const result = results[i];
        const scored: Scored = typeof result === 'number' ? { layers, fitness: result } : { layers, fitness: result.value, samples: result.samples };
        cache.set(key, { fitness: scored.fitness, samples: scored.samples });
        consider(scored);
      });
    }
    const scored: Scored[] = [];
    for (const candidate of candidates) {
      const result = await score(candidate);
      if (result) scored.push(result);
    }
    return scored;
  };
  let phasesLeft = phases.filter((p) => p === 'prune' || p === 'merge').length;
  const evolve = async (phase: EepPhase, carried: Scored[], first: PlanLayer[][], child: (elite: Scored[]) => PlanLayer[]) => {
    const phaseEnd = evaluations + Math.floor((budget - evaluations) / Math.max(1, phasesLeft--));
    incumbent = carried[0];
    let population = rank([...carried, ...(await scoreAll(first))]);
    if (population.length === 0) throw new Error('EEP: the evaluation budget is too small for one candidate');
    const report = (generation: number) => {
      const progress = { phase, generation, bestFitness: incumbent!.fitness, candidateFitness: population[0].fitness, evaluations };
      history.push(progress);
      options.onGeneration?.(progress);
    };
    report(0);
    let idle = 0;
    for (let generation = 1; (generations <= 0 || generation <= generations) && evaluations < phaseEnd && idle < 3; generation++) {
      const elite = population.slice(0, eliteSize);
      const children = Array.from({ length: populationSize - elite.length }, () => child(elite));
      const before = evaluations;
      population = rank([...elite, ...(await scoreAll(children))]);
      idle = evaluations === before ? idle + 1 : 0;
      report(generation);
    }
    return incumbent!;
  };

  const randomSubsets = (): PlanLayer[] => shapes.map((s) => ({ layer: s.layer, keptExperts: random.sample(s.numExperts, s.count) }));
  const seeds = (options.initial ?? []).map((plan) => shapes.map((s) => {
    const layer = plan.find((l) => l.layer === s.layer);
    if (!layer) throw new Error(`EEP: an initial plan has no layer ${s.layer}`);
    return layer;
  }));
  /** The seeds first, then mutations of them (random subsets when there is no seed). */
  const firstPopulation = (from: PlanLayer[][], mutate: (parent: PlanLayer[]) => PlanLayer[], fresh: () => PlanLayer[]) =>
    [...from, ...Array.from({ length: Math.max(0, populationSize - from.length) }, (_, i) => (from.length > 0 ? mutate(from[i % from.length]) : fresh()))];
  const identityMerge = (layers: PlanLayer[]): PlanLayer[] => layers.map((l) => ({
    layer: l.layer,
    keptExperts: l.keptExperts.slice(),
    routerMap: l.routerMap ?? oneHotRows(l.keptExperts, numExperts.get(l.layer)!),
    mergeMatrix: l.mergeMatrix ?? oneHotRows(l.keptExperts, numExperts.get(l.layer)!),
  }));

  let best: Scored | undefined;
  let pruned: Scored | undefined;
  let carried: Scored[] = [];
  if (phases.includes('prune')) {
    const subsets = seeds.map((plan) => plan.map((l) => ({ layer: l.layer, keptExperts: l.keptExperts.slice() })));
    const mutate = (parent: PlanLayer[]) => {
      const once = mutateSubset(parent, shapes, random);
      return random.next() < 0.5 ? mutateSubset(once, shapes, random) : once;
    };
    best = pruned = await evolve('prune', [], firstPopulation(subsets, mutate, randomSubsets), (elite) => mutateSubset(elite[random.int(elite.length)].layers, shapes, random));
    // An identity merge computes what the pruned model computes, so the best enters phase 2 with its
    // fitness. Only the best: rows of elites that keep other experts would not line up in a crossover.
    carried = [{ ...pruned, layers: identityMerge(pruned.layers) }];
    cache.set(cacheKey(carried[0].layers), { fitness: pruned.fitness, samples: pruned.samples });
  }
  if (phases.includes('merge')) {
    const perturb = (layers: PlanLayer[]) => layers.map((l) => ({ ...l, routerMap: gaussian(l.routerMap!, parameters, random), mergeMatrix: gaussian(l.mergeMatrix!, parameters, random) }));
    const starts = carried.length > 0 ? [] : (seeds.length > 0 ? seeds : [randomSubsets()]).map(identityMerge);
    const from = carried.length > 0 ? carried.map((s) => s.layers) : starts;
    const mutants = Array.from({ length: Math.max(0, populationSize - from.length) }, (_, i) => perturb(from[i % from.length]));
    best = await evolve('merge', carried, [...starts, ...mutants], (elite) => perturb(crossRows(elite[random.int(elite.length)].layers, elite[random.int(elite.length)].layers, random)));
  }
  if (!best) throw new Error('EEP: no phase to run');
  return {
    layers: canonical(best.layers),
    fitness: best.fitness,
    ...(pruned ? { pruned: { layers: canonical(pruned.layers), fitness: pruned.fitness } } : {}),
    evaluations,
    history,
    parameters,
    ...(alignment ? alignment.record() : {}),
  };
}

/**
 * The search's course as a plan records it (`method.parameters.search`), per phase and generation
 * (generation 0 is the starting population): the fitness of the plan it would return (`plan`) and of
 * its best candidate (`candidate`, above `plan` where a lead was within the noise). Six decimals.
 */
export type EepSearchRecord = Partial<Record<EepPhase, { plan: number[]; candidate: number[] }>>;

export function searchRecord(history: EepProgress[]): EepSearchRecord {
  const round = (x: number) => Number(x.toFixed(6));
  const record: EepSearchRecord = {};
  for (const step of history) {
    const phase = (record[step.phase] ??= { plan: [], candidate: [] });
    phase.plan.push(round(step.bestFitness));
    phase.candidate.push(round(step.candidateFitness));
  }
  return record;
}

/** Candidates that run the same function share a key: a subset in any order, or the exact matrices. */
function cacheKey(layers: PlanLayer[]): string {
  return JSON.stringify(layers.map((l) => (l.routerMap ? [l.routerMap, l.mergeMatrix] : [...l.keptExperts].sort((a, b) => a - b))));
}

function definedOnly(options: Partial<EepParameters>): Partial<EepParameters> {
  const keys = Object.keys(DEFAULT_EEP_PARAMETERS) as (keyof EepParameters)[];
  return Object.fromEntries(keys.filter((k) => options[k] !== undefined).map((k) => [k, options[k]]));
}

/**
 * Whether `a` beats `b` by more than `z` standard errors of the sum of their paired per-sample
 * differences (a one-sided paired test; the sum's standard error is √n × the differences' sample
 * standard deviation). Without per-sample scores on both, any gain counts.
 */
export function significantlyBetter(a: { fitness: number; samples?: ArrayLike<number> }, b: { fitness: number; samples?: ArrayLike<number> }, z: number): boolean {
  if (!(a.fitness > b.fitness)) return false;
  if (z <= 0 || !a.samples || !b.samples || a.samples.length !== b.samples.length || a.samples.length < 2) return true;
  return a.fitness - b.fitness > z * pairedDifference(a.samples, b.samples).standardError;
}

/**
 * Σ (a_i − b_i) over paired samples (n ≥ 2, equal lengths) and that sum's standard error: √n × the
 * differences' sample standard deviation.
 */
export function pairedDifference(a: ArrayLike<number>, b: ArrayLike<number>): { difference: number; standardError: number } {
  const n = a.length;
  let mean = 0;
  for (let i = 0; i < n; i++) mean += a[i] - b[i];
  mean /= n;
  let squares = 0;
  for (let i = 0; i < n; i++) squares += (a[i] - b[i] - mean) ** 2;
  return { difference: mean * n, standardError: Math.sqrt((n * squares) / (n - 1)) };
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

/**
 * Prune-only results list kept experts ascending; merged rows keep their phase-1 labels in order. A
 * plan whose every layer is an identity merge is the pruned plan, and is returned as one.
 */
function canonical(layers: PlanLayer[]): PlanLayer[] {
  const merged = layers.some((l) => l.routerMap && !(isOneHot(l.routerMap, l.keptExperts) && isOneHot(l.mergeMatrix!, l.keptExperts)));
  return layers.map((l) => (merged && l.routerMap ? l : { layer: l.layer, keptExperts: [...l.keptExperts].sort((a, b) => a - b) }));
}

function isOneHot(matrix: number[][], keptExperts: number[]): boolean {
  return matrix.every((row, i) => row.every((x, j) => x === (j === keptExperts[i] ? 1 : 0)));
}
