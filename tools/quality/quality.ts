/**
 * Pruning quality on a demo model (run by hand: `node --import tsx tools/quality/quality.ts [--model
 * demo/models-extra/olmoe] [--variants a,b] [--no-sweep] [--no-gating] [--held-out-rows N] [--eep-samples N]
 * [--eep-generations N] [--fit-tokens N] [--smoke] [--report-from saved.json]`): for each domain, keeping half
 * of the experts per layer, the held-out loss of every method calibrated on each of the four domains
 * (mean of 3 seeds where the method has a seed); adaptive gating's share of single-expert tokens and
 * loss change at T = 0.1 and 0.2; and a sweep over E..1 kept experts drawn as demo/sweep.svg
 * (demo/sweep-<model>.svg for another model). Prints the markdown for demo/README.md's "Pruning
 * quality" section.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { PlanMethodName } from '../../common/protocol';
import { applyRepairs, type Repair } from '../../server/src/plan/methods/repairs';
import type { CompensationGranularity } from '../../server/src/plan/methods/outputCompensation';
import { Evaluator, loadSamples, runtimePlanFor } from '../../server/src/evaluate';
import { eepSearch, moeLayerShapes, pairedDifference, type PlanLayer } from '../../server/src/plan';
import type { AlignmentSource } from '../../server/src/plan/methods/neuronAlignment';
import type { RuntimePlan } from '../../server/src/runtime';
import { Calibration, captureCalibration, makePlan } from '../../server/src/plan/run';
import { modelIdentity, RuntimePool } from '../../server/src/profile/run';

const root = path.resolve(__dirname, '../..');
const argv = process.argv.slice(2);
const flag = (name: string) => argv.includes(`--${name}`);
const option = (name: string) => {
  const at = argv.indexOf(`--${name}`);
  return at >= 0 ? argv[at + 1] : undefined;
};
const MODEL_FOLDER = option('model') ?? 'demo/model';
const MODEL = path.join(root, MODEL_FOLDER);
const MODEL_NAME = path.basename(MODEL) === 'model' ? '' : path.basename(MODEL);
const DOMAINS = ['code', 'prose', 'arithmetic', 'records'];
const SEEDS = [0, 1, 2];
/** `--smoke`: a few rows and one generation, to check the tool end to end in a minute (its figures mean nothing). */
const SMOKE = flag('smoke');
const CALIBRATION_ROWS = SMOKE ? 6 : 48;
/**
 * Every row of each validation split by default (the method differences on code and prose are small, so all
 * the data counts); `--held-out-rows N` takes the first N of each, for a run that must fit a loaded machine.
 */
const HELD_OUT_ROWS = SMOKE ? 4 : Number(option('held-out-rows') ?? Number.MAX_SAFE_INTEGER);
/**
 * EEP: one two-phase search per calibration and seed, seeded with the frequency, soft-count, REAP and
 * NAEE plans of that calibration; "eep (prune)" is its phase-1 best, "eep (merge)" what it returns.
 * Fitness = negative loss on all the calibration rows the other methods see.
 */
const EEP = { populationSize: SMOKE ? 4 : 8, eliteSize: 2, generations: SMOKE ? 1 : Number(option('eep-generations') ?? 5), samples: SMOKE ? CALIBRATION_ROWS : Number(option('eep-samples') ?? CALIBRATION_ROWS) };

/**
 * A row of the table: a method's plan, optionally followed by closed-form repairs applied here (so one
 * plan serves its repaired variants, and compensation's granularity can be chosen), or a diagnostic.
 */
interface Variant {
  label: string;
  method: PlanMethodName;
  seeded: boolean;
  /** The method's own parameters (UNCURL's similarity). */
  parameters?: Record<string, unknown>;
  /** EEP: the phase-1 (prune) result or the final (merge) one. */
  phase?: 'prune' | 'merge';
  repairs?: Repair[];
  granularity?: CompensationGranularity;
  /**
   * Diagnostic, not a method (left out of the bars): UNCURL's survivors kept as they are and the rest of
   * each cluster dropped, i.e. UNCURL's choice of experts without its merge. Set against "uncurl" and
   * "uncurl (unaligned)" it measures what averaging the cluster members costs, with and without aligning
   * their neurons first.
   */
  survivorsOnly?: boolean;
  /**
   * A side measurement, calibrated on the evaluated domain only and left out of the bars (it compares a
   * choice within a method, and the run must fit the shared machine): the diagnostic, per-layer against
   * per-expert compensation, the router refit, UNCURL's centred similarity.
   */
  ownOnly?: boolean;
  /**
   * The product's method as it was before a change, kept beside it for comparison (UNCURL and EEP without
   * neuron alignment): in the tables and the sweep, but not one of the methods the bars hold to account.
   */
  comparison?: boolean;
  /**
   * A global expert budget (`keepShare`): as many experts in all as `keep` in every layer, shared out across
   * layers by each layer's measured marginal loss, so layers keep different counts (exact in MoE Studio's
   * loader; stock loaders need one count in every layer). Counts below the model's top-k are not planned.
   */
  globalBudget?: boolean;
}

const COMPENSATION: Repair[] = ['outputCompensation'];
const REFIT_AND_COMPENSATION: Repair[] = ['routerRefit', 'outputCompensation'];

const ALL_VARIANTS: Variant[] = [
  { label: 'random', method: 'random', seeded: true },
  { label: 'frequency', method: 'frequency', seeded: false },
  { label: 'softCount', method: 'softCount', seeded: false },
  { label: 'reap', method: 'reap', seeded: false },
  { label: 'naee', method: 'naee', seeded: false },
  { label: 'uncurl', method: 'uncurl', seeded: true },
  // UNCURL as the paper merges: neuron k averaged with neuron k (the default aligns neurons first).
  { label: 'uncurl (unaligned)', method: 'uncurl', seeded: true, parameters: { neuronAlignment: false }, comparison: true },
  { label: 'eep (prune)', method: 'eep', seeded: true, phase: 'prune' },
  { label: 'eep (merge)', method: 'eep', seeded: true, phase: 'merge' },
  // EEP's merge as the paper merges: neuron k averaged with neuron k (the default aligns neurons first).
  { label: 'eep (unaligned)', method: 'eep', seeded: true, phase: 'merge', parameters: { neuronAlignment: false }, comparison: true },
  { label: 'frequency + compensation', method: 'frequency', seeded: false, repairs: COMPENSATION },
  { label: 'reap + compensation', method: 'reap', seeded: false, repairs: COMPENSATION },
  { label: 'naee + compensation', method: 'naee', seeded: false, repairs: COMPENSATION },
  { label: 'uncurl + compensation', method: 'uncurl', seeded: true, repairs: COMPENSATION },
  { label: 'eep + compensation', method: 'eep', seeded: true, phase: 'merge', repairs: COMPENSATION },
  { label: 'frequency (global budget)', method: 'frequency', seeded: false, globalBudget: true },
  { label: 'naee (global budget)', method: 'naee', seeded: false, globalBudget: true },
  { label: 'naee + compensation (per layer)', method: 'naee', seeded: false, repairs: COMPENSATION, granularity: 'layer', ownOnly: true },
  { label: 'eep + refit + compensation', method: 'eep', seeded: true, phase: 'merge', repairs: REFIT_AND_COMPENSATION, ownOnly: true },
  { label: 'uncurl (centred)', method: 'uncurl', seeded: true, parameters: { similarity: 'correlation' }, ownOnly: true },
  { label: 'uncurl survivors, no merge (diagnostic)', method: 'uncurl', seeded: true, survivorsOnly: true, ownOnly: true },
];
const chosenVariants = option('variants')?.split(',');
const VARIANTS = chosenVariants ? ALL_VARIANTS.filter((v) => chosenVariants.includes(v.label)) : ALL_VARIANTS;

const SWEEP_LABELS = ['random', 'frequency', 'reap', 'naee', 'uncurl', 'uncurl (unaligned)', 'frequency + compensation', 'reap + compensation', 'naee + compensation', 'uncurl + compensation', 'frequency (global budget)', 'naee (global budget)'];
const SWEEP_VARIANTS = SWEEP_LABELS.map((label) => ALL_VARIANTS.find((v) => v.label === label)!);
/**
 * NAEE's reconstruction and both repairs are fitted on the first this-many calibration tokens per layer
 * (the product's default is 1024, the first four to eight rows; the repairs' least squares want more:
 * 2,048 is about ten of the 48 calibration rows; more made the merged plans' compensation, which runs
 * every merged expert on these tokens, too slow for the shared machine).
 */
const FIT_TOKENS = Number(option('fit-tokens') ?? (SMOKE ? 512 : 2048));
/** "Own calibration beats the others'" is asked only of domains that route differently from it (mean JSD of expert usage, bits). */
const ROUTES_DIFFERENTLY = 0.1;

/** How far a merge moved from its kept experts: the share of Σ|W_EM| off the rows' own experts and the largest such entry. */
function mergeSize(layers: PlanLayer[]): string {
  const merged = layers.filter((l) => l.mergeMatrix);
  if (merged.length === 0) return 'prune-only (the merge phase found no significant gain)';
  let off = 0;
  let all = 0;
  let largest = 0;
  for (const l of merged) {
    l.mergeMatrix!.forEach((row, i) => row.forEach((c, j) => {
      all += Math.abs(c);
      if (j === l.keptExperts[i]) return;
      off += Math.abs(c);
      largest = Math.max(largest, Math.abs(c));
    }));
  }
  return `merged, ${((100 * off) / all).toFixed(1)}% of |W_EM| off the kept experts, largest off entry ${largest.toFixed(3)}`;
}

async function main(): Promise<void> {
  const from = option('report-from');
  if (from) {
    console.log(report(JSON.parse(fs.readFileSync(from, 'utf8')) as Measurements).join('\n'));
    return;
  }
  const started = performance.now();
  const identity = await modelIdentity(MODEL);
  const pool = new RuntimePool();
  const model = await pool.get(identity, 2);
  const moe = identity.spec.layers.find((l) => l.kind === 'moe')!;
  const numExperts = moe.kind === 'moe' ? moe.moe.numExperts : 0;
  const KEEP = numExperts / 2;
  const topK = moe.kind === 'moe' ? moe.moe.topK : 1;
  const calibrations = new Map<string, Calibration>();
  const calibrationFor = async (domain: string) => {
    let calibration = calibrations.get(domain);
    if (!calibration) {
      calibration = await Calibration.load(model, identity, [{ file: path.join(root, `demo/data/${domain}.train.jsonl`) }], { maxRows: CALIBRATION_ROWS, naeeTokens: FIT_TOKENS });
      calibrations.set(domain, calibration);
    }
    return calibration;
  };
  const eepCache = new Map<string, Promise<{ prune: PlanLayer[]; merge: PlanLayer[] }>>();
  /** One source for every search, so each pair of experts is aligned once for the whole run. */
  let alignment: Promise<AlignmentSource> | undefined;
  const eepRuns = (calibration: Calibration, seed: number, neuronAlignment: boolean) => {
    const key = `${calibration.files.join()}\0${seed}\0${neuronAlignment}`;
    let runs = eepCache.get(key);
    if (!runs) {
      runs = (async () => {
        const evaluator = calibration.evaluator(EEP.samples);
        const result = await eepSearch({
          layers: moeLayerShapes(identity.spec), target: KEEP, seed, initial: await calibration.heuristicPlans(KEEP),
          fitness: (plan) => evaluator.score(plan), populationSize: EEP.populationSize, eliteSize: EEP.eliteSize, generations: EEP.generations, budget: 1000,
          neuronAlignment, alignment: neuronAlignment ? await (alignment ??= calibration.alignmentSource()) : undefined,
        });
        process.stderr.write(`eep ${path.basename(calibration.files[0])} seed ${seed}${neuronAlignment ? '' : ' unaligned'}: ${mergeSize(result.layers)}\n`);
        return { prune: result.pruned!.layers, merge: result.layers };
      })();
      eepCache.set(key, runs);
    }
    return runs;
  };
  /** Each method's plan once per calibration, count and seed: its repaired variants and the diagnostic start from it. */
  const basePlans = new Map<string, Promise<PlanLayer[]>>();
  const finalPlans = new Map<string, Promise<PlanLayer[]>>();
  /** A variant's plan, once per calibration, count and seed (the repairs of a merged plan run every merged expert). */
  const planFor = (calibration: Calibration, variant: Variant, keep: number, seed: number): Promise<PlanLayer[]> => {
    const key = `${calibration.files.join()}\0${variant.label}\0${keep}\0${seed}`;
    let plan = finalPlans.get(key);
    if (!plan) {
      plan = variantPlan(calibration, variant, keep, seed);
      finalPlans.set(key, plan);
    }
    return plan;
  };
  const variantPlan = async (calibration: Calibration, variant: Variant, keep: number, seed: number): Promise<PlanLayer[]> => {
    const request = variant.globalBudget ? { targetExperts: undefined, parameters: { ...variant.parameters, keepShare: keep / numExperts } } : { targetExperts: keep, parameters: variant.parameters };
    const key = `${calibration.files.join()}\0${variant.method}\0${JSON.stringify(request)}\0${seed}`;
    let base = basePlans.get(key);
    if (!base && variant.method !== 'eep') {
      base = makePlan(calibration, { method: variant.method, seed, ...request }, { modelFolder: MODEL_FOLDER, datasets: calibration.files }).then((p) => p.layers);
      basePlans.set(key, base);
    }
    let layers = variant.method === 'eep' ? (await eepRuns(calibration, seed, variant.parameters?.neuronAlignment !== false))[variant.phase ?? 'merge'] : await base!;
    if (variant.survivorsOnly) layers = layers.map((l) => ({ layer: l.layer, keptExperts: l.keptExperts }));
    if (variant.repairs) layers = (await applyRepairs(layers, variant.repairs, await calibration.layerError(), { granularity: variant.granularity })).layers;
    return layers;
  };
  /** table[evaluated domain][method][calibration domain] = held-out loss, mean over seeds. */
  const table: Record<string, Record<string, Record<string, number>>> = {};
  /** rows[evaluated domain][method] = each held-out row's share of the loss (own calibration, mean over seeds), for paired comparisons. */
  const rows: Record<string, Record<string, Float64Array>> = {};
  const baselines: Record<string, number> = {};
  const gating: { domain: string; t: number; share: number; change: number }[] = [];

  for (const domain of DOMAINS) {
    const heldOut = await loadSamples(path.join(root, `demo/data/${domain}.valid.jsonl`), model.tokenizer, { maxRows: HELD_OUT_ROWS });
    const evaluator = new Evaluator(model.runtime, heldOut.samples);
    const loss = async (plan?: RuntimePlan) => (await evaluator.evaluate(plan, ['loss'])).values.loss!;
    baselines[domain] = await loss();
    const scored = new Map<string, Float64Array>();
    table[domain] = {};
    rows[domain] = {};
    for (const variant of VARIANTS) {
      const scores: Record<string, number> = {};
      for (const calibrated of variant.ownOnly ? [domain] : DOMAINS) {
        const calibration = await calibrationFor(calibrated);
        const seeds = variant.seeded ? SEEDS : [0];
        const shares = new Float64Array(evaluator.size);
        for (const seed of seeds) {
          const layers = await planFor(calibration, variant, KEEP, seed);
          // The evaluator's fitness on text is minus the loss, shared out over the rows. A plan met before
          // (random's is the same for every calibration; methods often agree) is not evaluated again.
          const key = JSON.stringify(layers);
          let samples = scored.get(key);
          if (!samples) {
            samples = (await evaluator.score(runtimePlanFor(layers, identity.spec))).samples;
            scored.set(key, samples);
          }
          samples.forEach((x, i) => (shares[i] -= x / seeds.length));
        }
        scores[calibrated] = shares.reduce((a, b) => a + b, 0);
        if (calibrated === domain) rows[domain][variant.label] = shares;
      }
      table[domain][variant.label] = scores;
      process.stderr.write(`${domain} ${variant.label}: ${Object.entries(scores).map(([c, x]) => `${c} ${x.toFixed(4)}`).join(', ')} (${((performance.now() - started) / 1000).toFixed(0)} s)\n`);
    }
    if (heldOut.samples.kind === 'text' && !flag('no-gating')) {
      const capture = await captureCalibration(model.runtime, heldOut.samples.sequences);
      for (const t of [0.1, 0.2]) {
        const shares = capture.statistics.map((s) => s.gatingCurve!.singleExpertShare[s.gatingCurve!.threshold.findIndex((x) => Math.abs(x - t) < 1e-9)]);
        const plan = { layers: Object.fromEntries(capture.statistics.map((s) => [s.layer, { adaptiveThreshold: t }])) };
        gating.push({ domain, t, share: shares.reduce((a, b) => a + b, 0) / shares.length, change: (await loss(plan)) - baselines[domain] });
      }
    }
  }

  // Sweep on records, calibrated on records: on code and prose even random pruning to 4 experts costs
  // only hundredths of a nat, so their curves hide where quality falls off; records shows it.
  const sweepDomain = 'records';
  const counts = Array.from({ length: numExperts }, (_, i) => numExperts - i).filter((c) => numExperts <= 8 || c % 2 === 0 || c === 1);
  const heldOut = await loadSamples(path.join(root, `demo/data/${sweepDomain}.valid.jsonl`), model.tokenizer, { maxRows: HELD_OUT_ROWS });
  const sweepEvaluator = new Evaluator(model.runtime, heldOut.samples);
  const series: { method: string; values: number[] }[] = [];
  for (const variant of flag('no-sweep') ? [] : SWEEP_VARIANTS) {
    const method = variant.label;
    const values: number[] = [];
    for (const count of counts) {
      if (count === numExperts) {
        values.push(baselines[sweepDomain]);
        continue;
      }
      // A global budget below top-k experts a layer is not one: every layer keeps at least its top-k.
      if (variant.globalBudget && count < topK) {
        values.push(NaN);
        continue;
      }
      const layers = await planFor(await calibrationFor(sweepDomain), variant, count, 0);
      values.push((await sweepEvaluator.evaluate(runtimePlanFor(layers, identity.spec), ['loss'])).values.loss!);
    }
    series.push({ method, values });
    process.stderr.write(`sweep ${method}: ${values.map((v) => v.toFixed(3)).join(' ')}\n`);
  }
  const sweepFile = MODEL_NAME ? `sweep-${MODEL_NAME}.svg` : 'sweep.svg';
  if (series.length) fs.writeFileSync(path.join(SMOKE ? os.tmpdir() : path.join(root, 'demo'), sweepFile), sweepSvg(counts, series, baselines[sweepDomain], `${identity.spec.architecture}: held-out loss on ${sweepDomain} against experts kept per layer (calibrated on ${sweepDomain})`, numExperts));
  /** routingDivergence[d][c]: Jensen-Shannon divergence of d's and c's calibration expert usage, mean over layers. */
  const routingDivergence: Record<string, Record<string, number>> = {};
  for (const d of DOMAINS) {
    routingDivergence[d] = {};
    const own = await (await calibrationFor(d)).statistics();
    for (const c of DOMAINS) {
      const other = await (await calibrationFor(c)).statistics();
      routingDivergence[d][c] = own.reduce((sum, s, i) => sum + jensenShannonBits(s.tokenCount, other[i].tokenCount), 0) / own.length;
    }
  }
  for (const calibration of calibrations.values()) await calibration.close();
  await pool.close();

  const measurements: Measurements = {
    keep: KEEP, numExperts, architecture: identity.spec.architecture, sweepFile, minutes: (performance.now() - started) / 60000, command: argv.join(' '),
    table, baselines, routingDivergence, series, counts, gating,
    rows: Object.fromEntries(Object.entries(rows).map(([d, r]) => [d, Object.fromEntries(Object.entries(r).map(([l, v]) => [l, Array.from(v)]))])),
  };
  // The measurements, kept before the report is written (a long run's numbers survive a failed report:
  // `--report-from <file>` writes the report from them).
  fs.writeFileSync(path.join(os.tmpdir(), `quality-${MODEL_NAME || 'model'}${SMOKE ? '-smoke' : ''}.json`), JSON.stringify(measurements));
  console.log(report(measurements).join('\n'));
}

interface Measurements {
  keep: number;
  numExperts: number;
  architecture: string;
  sweepFile: string;
  minutes: number;
  /** The run's arguments. */
  command: string;
  /** table[evaluated domain][method][calibration domain] = held-out loss, mean over seeds. */
  table: Record<string, Record<string, Record<string, number>>>;
  baselines: Record<string, number>;
  routingDivergence: Record<string, Record<string, number>>;
  series: { method: string; values: number[] }[];
  counts: number[];
  gating: { domain: string; t: number; share: number; change: number }[];
  /** Each held-out row's share of the loss (own calibration, mean over seeds). */
  rows: Record<string, Record<string, number[]>>;
}

function report(m: Measurements): string[] {
  const { keep: KEEP, numExperts, sweepFile, table, baselines, routingDivergence, series, counts, gating } = m;
  const rows = Object.fromEntries(Object.entries(m.rows).map(([d, r]) => [d, Object.fromEntries(Object.entries(r).map(([l, v]) => [l, Float64Array.from(v)]))]));
  const lines: string[] = [];
  const fmt = (x: number) => x.toFixed(3);
  const others = (d: string) => DOMAINS.filter((c) => c !== d);
  /** The other calibration that did best on d: the hardest one to beat. */
  const bestOther = (d: string, label: string) => others(d).reduce((a, b) => (table[d][label][b] < table[d][label][a] ? b : a));
  lines.push(`Held-out next-token loss (nats; demo protocol: BOS, ≤ 256 tokens, every prediction counted; ${HELD_OUT_ROWS >= Number.MAX_SAFE_INTEGER ? 'every row' : `the first ${HELD_OUT_ROWS} rows`} of each \`{domain}.valid.jsonl\`) keeping ${KEEP} of ${numExperts} experts in every layer (${m.architecture}, \`${MODEL_FOLDER}\`). Each cell: calibrated on the domain itself / calibrated on the best of the three other domains (which one in brackets: c code, p prose, a arithmetic, r records); ${CALIBRATION_ROWS} calibration rows from \`{domain}.train.jsonl\`; mean of seeds ${SEEDS.join(', ')} for random, UNCURL and EEP. EEP: population ${EEP.populationSize} (elite ${EEP.eliteSize}) seeded with the frequency, soft-count, REAP and NAEE plans and mutations of them, ${EEP.generations} prune generations, then ${EEP.generations} merge generations from the prune result as an identity merge; a candidate replaces the plan only when it beats it by 2 standard errors of the paired per-row differences (EEP's default \`significance\`); "eep (prune)" is the phase-1 result of the same run; fitness = negative loss on ${EEP.samples} calibration rows.`, '');
  lines.push(`| method | ${DOMAINS.map((d) => `${d} (full ${fmt(baselines[d])})`).join(' | ')} |`);
  lines.push(`| --- | ${DOMAINS.map(() => '---').join(' | ')} |`);
  for (const variant of VARIANTS) lines.push(`| ${variant.label}${variant.ownOnly && !variant.survivorsOnly ? ' (own only)' : ''} | ${DOMAINS.map((d) => { if (variant.ownOnly) return fmt(table[d][variant.label][d]); const o = bestOther(d, variant.label); return `${fmt(table[d][variant.label][d])} / ${fmt(table[d][variant.label][o])} (${o[0]})`; }).join(' | ')} |`);
  lines.push('', `Bars (per domain; "beat other calibrations" means lower loss than the same method calibrated on each other domain that routes differently from it, i.e. whose mean JSD of expert usage is at least ${ROUTES_DIFFERENTLY} bits; rows marked "own only" are side measurements, calibrated on the domain itself and left out of these two bars):`, '');
  const taskSpecific = VARIANTS.filter((v) => v.method !== 'random' && !v.ownOnly && !v.comparison).map((v) => v.label);
  // The best method is sought among every method, side measurements included; the diagnostic is no method.
  const methods = VARIANTS.filter((v) => !v.survivorsOnly && !v.comparison);
  const listMissing = (all: string[], passed: string[]) => (passed.length < all.length ? ` (not: ${all.filter((l) => !passed.includes(l)).join(', ')})` : '');
  /** a minus b on d's held-out rows (own calibration), with its 95% half-width. */
  const versus = (d: string, a: string, b: string) => {
    // Each row holds its share of the mean loss, so the summed difference is the difference of the means.
    const { difference, standardError } = pairedDifference(rows[d][a], rows[d][b]);
    const halfWidth = 1.96 * standardError;
    return `${signed(difference)} ± ${halfWidth.toFixed(4)}${difference - halfWidth > 0 ? ', significantly worse' : difference + halfWidth < 0 ? ', significantly better' : ''}`;
  };
  const verdicts: Record<string, { random: boolean; others: boolean; half: boolean; uniformHalf: boolean }> = {};
  for (const d of DOMAINS) {
    const row = table[d];
    const differentlyRouted = others(d).filter((c) => routingDivergence[d][c] >= ROUTES_DIFFERENTLY);
    const beatsRandom = taskSpecific.filter((l) => row[l][d] < row.random[d]);
    const beatsOthers = taskSpecific.filter((l) => differentlyRouted.every((c) => row[l][d] < row[l][c]));
    const best = (among: Variant[]) => among.reduce((a, v) => (row[v.label][d] < row[a.label][d] ? v : a)).label;
    const bestOverall = best(methods);
    const divergence = others(d).map((c) => `${c[0]} ${routingDivergence[d][c].toFixed(3)}`).join(', ');
    const increase = (label: string) => row[label][d] - baselines[d];
    const atMostHalf = (label: string) => (row.frequency ? increase(label) <= increase('frequency') / 2 : false);
    const half = atMostHalf(bestOverall);
    // The same question asked of plans that stock loaders take: one count in every layer.
    const bestUniform = best(methods.filter((v) => !v.globalBudget));
    const uniformHalf = atMostHalf(bestUniform);
    verdicts[d] = { random: beatsRandom.length === taskSpecific.length, others: beatsOthers.length === taskSpecific.length, half, uniformHalf };
    const uniformNote = bestUniform === bestOverall ? '' : `; best with one count in every layer (${bestUniform}) ${signed(increase(bestUniform))}: ${uniformHalf ? 'at most half' : 'more than half'}`;
    const halfOfFrequency = row.frequency ? `; best (${bestOverall}) loss increase ${signed(increase(bestOverall))} against frequency's ${signed(increase('frequency'))}: ${half ? 'at most half' : 'more than half'} (best minus frequency ${bestOverall === 'frequency' ? '0' : versus(d, bestOverall, 'frequency')})${uniformNote}` : '';
    const routing = `routing divergence to the other calibrations (JSD of expert usage, bits, mean over layers): ${divergence}${differentlyRouted.length < 3 ? ` (${others(d).filter((c) => !differentlyRouted.includes(c)).join(', ')} below ${ROUTES_DIFFERENTLY}: routes alike, not asked)` : ''}`;
    const eep = row['eep (merge)'] && row['eep (prune)']
      ? `; EEP merge ≤ EEP prune: ${row['eep (merge)'][d] <= row['eep (prune)'][d] ? 'yes' : 'no'} (${versus(d, 'eep (merge)', 'eep (prune)')})`
      : '';
    const eepAlignment = row['eep (merge)'] && row['eep (unaligned)'] ? `; EEP merge aligned minus unaligned ${versus(d, 'eep (merge)', 'eep (unaligned)')}` : '';
    lines.push(`- ${d}: beat random ${beatsRandom.length}/${taskSpecific.length}${listMissing(taskSpecific, beatsRandom)}; beat other calibrations ${beatsOthers.length}/${taskSpecific.length}${listMissing(taskSpecific, beatsOthers)}${halfOfFrequency}${eep}${eepAlignment}; ${routing}`);
  }
  type Bar = 'random' | 'others' | 'half' | 'uniformHalf';
  const held = (key: Bar) => DOMAINS.filter((d) => verdicts[d][key]);
  const summary = (key: Bar, text: string) => `- ${text}: ${held(key).length === DOMAINS.length ? 'holds on every domain' : `holds on ${held(key).join(', ') || 'no domain'}; not on ${DOMAINS.filter((d) => !verdicts[d][key]).join(', ')}`}`;
  lines.push('', 'The bars on this model:', '', summary('half', 'best method\'s loss increase at most half of frequency\'s'), summary('uniformHalf', 'the same among plans with one count in every layer (what stock loaders take)'), summary('random', 'every task-specific method beats random'), summary('others', 'own-domain calibration beats the differently routed domains\' for every method'));
  lines.push('', 'The ± figures are 95% intervals of the paired held-out difference (the first named minus the second, in nats; each row\'s loss share compared row by row, so the rows\' own difficulty cancels); "significantly worse" where the whole interval is above 0.');
  lines.push('', 'Adaptive gating on the full model (every layer, all experts kept), held-out data:', '', '| domain | T | single-expert tokens | loss change |', '| --- | --- | --- | --- |');
  for (const g of gating) lines.push(`| ${g.domain} | ${g.t} | ${(100 * g.share).toFixed(1)}% | ${g.change >= 0 ? '+' : ''}${g.change.toFixed(4)} |`);
  lines.push('', `![Held-out loss against experts kept](${sweepFile})`, '', `| method | ${counts.join(' | ')} |`, `| --- | ${counts.map(() => '---').join(' | ')} |`);
  for (const s of series) lines.push(`| ${s.method} | ${s.values.map((v) => (planned(v) ? fmt(v) : '–')).join(' | ')} |`);
  lines.push('', `Generated by \`node --import tsx tools/quality/quality.ts${m.command ? ' ' + m.command : ''}\` in ${m.minutes.toFixed(1)} minutes.`);
  return lines;
}

/** JSD (bits) between two count vectors, each normalised to a distribution. */
function jensenShannonBits(a: number[], b: number[]): number {
  const total = (v: number[]) => v.reduce((x, y) => x + y, 0);
  const p = a.map((x) => x / total(a));
  const q = b.map((x) => x / total(b));
  const entropy = (v: number[]) => -v.reduce((s, x) => s + (x > 0 ? x * Math.log2(x) : 0), 0);
  return entropy(p.map((x, i) => (x + q[i]) / 2)) - (entropy(p) + entropy(q)) / 2;
}

/** Four decimals with a sign, and no "−0.0000" for a difference that rounds to nothing. */
function signed(x: number): string {
  const text = Math.abs(x).toFixed(4);
  return Number(text) === 0 ? text : `${x > 0 ? '+' : '−'}${text}`;
}

/** A line chart as plain SVG: one polyline per method, the full model as a dashed reference. */
/** A sweep point that was planned: NaN (null once saved as JSON) where the variant has no plan at that count. */
function planned(value: number | null): value is number {
  return typeof value === 'number' && Number.isFinite(value);
}

function sweepSvg(counts: number[], series: { method: string; values: number[] }[], baseline: number, title: string, numExperts: number): string {
  const width = 780;
  const height = 420;
  const margin = { left: 60, right: 200, top: 40, bottom: 50 };
  const all = series.flatMap((s) => s.values.filter(planned)).concat(baseline);
  const low = Math.floor(Math.min(...all) * 2) / 2;
  const high = Math.ceil(Math.max(...all) * 2) / 2;
  const x = (count: number) => margin.left + ((Math.max(...counts) - count) / (Math.max(...counts) - Math.min(...counts))) * (width - margin.left - margin.right);
  const y = (value: number) => margin.top + ((high - value) / (high - low)) * (height - margin.top - margin.bottom);
  const colours = ['#888888', '#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#8c564b', '#17becf', '#e377c2', '#bcbd22', '#ff7f0e', '#1f77b4', '#2ca02c'];
  const parts = [`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`, `<rect width="100%" height="100%" fill="white"/>`, `<text x="${width / 2}" y="20" text-anchor="middle" font-size="14">${title}</text>`];
  for (let v = low; v <= high + 1e-9; v += 0.5) parts.push(`<line x1="${margin.left}" x2="${width - margin.right}" y1="${y(v)}" y2="${y(v)}" stroke="#eee"/><text x="${margin.left - 6}" y="${y(v) + 4}" text-anchor="end">${v.toFixed(1)}</text>`);
  for (const c of counts) parts.push(`<text x="${x(c)}" y="${height - margin.bottom + 18}" text-anchor="middle">${c}</text>`);
  parts.push(`<text x="${(margin.left + width - margin.right) / 2}" y="${height - 10}" text-anchor="middle">experts kept per layer (of ${numExperts}; a global budget: the mean over layers)</text>`);
  parts.push(`<text x="16" y="${height / 2}" transform="rotate(-90 16 ${height / 2})" text-anchor="middle">held-out loss (nats)</text>`);
  parts.push(`<line x1="${margin.left}" x2="${width - margin.right}" y1="${y(baseline)}" y2="${y(baseline)}" stroke="black" stroke-dasharray="4 4"/>`);
  series.forEach((s, i) => {
    const colour = colours[i % colours.length];
    // A global budget's line is dashed in its uniform method's colour; its x is the mean count per layer.
    const dash = s.method.includes('global budget') ? ' stroke-dasharray="6 3"' : '';
    const points = s.values.map((v, j) => (planned(v) ? `${x(counts[j]).toFixed(1)},${y(v).toFixed(1)}` : '')).filter(Boolean);
    parts.push(`<polyline fill="none" stroke="${colour}" stroke-width="2"${dash} points="${points.join(' ')}"/>`);
    parts.push(`<text x="${width - margin.right + 10}" y="${margin.top + 16 * i + 10}" fill="${colour}">${s.method}</text>`);
  });
  parts.push(`<text x="${width - margin.right + 10}" y="${margin.top + 16 * series.length + 10}">full model (dashed)</text>`, '</svg>');
  return parts.join('\n') + '\n';
}

void main().catch((error) => {
  console.error(error);
  // The runtime's worker threads would keep a failed run alive (and busy) otherwise.
  process.exit(1);
});
