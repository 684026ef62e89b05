/**
 * From a model and calibration data to a `*.moeplan.json`: the method's inputs from the calibration
 * (statistics, NAEE's layer error, EEP's fitness), `generatePlan`, and the file written with
 * `formatPlan`, never over an existing one.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { GenerateMethodName } from '../../../../common/protocol';
import { UserError } from '../../errors';
import { defaultProfilePath, fileSha256, loadProfile } from '../../profile/profileFile';
import { modelIdentity, type ModelIdentity } from '../../profile/run/modelIdentity';
import { RuntimePool } from '../../profile/run/runtimePool';
import { sharedRuntimes } from '../../profile/run/profileDataset';
import type { ModelSpec } from '../../checkpoint/modelSpec';
import { generatePlan, type PlanMethod } from '../generatePlan';
import { DEFAULT_EEP_PARAMETERS, type EepParameters, type EepProgress } from '../methods/eep';
import type { AlignmentSource } from '../methods/neuronAlignment';
import type { WorkEstimate } from '../../runtime';
import { allocateExperts } from '../methods/layerBudget';
import { REPAIRS, type Repair } from '../methods/repairs';
import type { ExpertTarget } from '../statistics';
import { UNCURL_SIMILARITIES, type UncurlSimilarity } from '../methods/uncurl';
import { describeHeavyMerges, heavyMerges, sharesFromCounts } from '../mergeWarnings';
import { formatPlan, type MoePlan, parsePlan } from '../planFile';
import { profileCalibration } from './calibrationProfile';
import { Calibration, DEFAULT_CALIBRATION_ROWS, DEFAULT_EEP_SAMPLES, type CalibrationFile, type CalibrationParameters } from './calibration';
import { eepWork, eepWorkShape, measureEepAlignment } from './eepEstimate';

export interface PlanRequestOptions {
  method: GenerateMethodName;
  /** Every method but adaptiveGating. */
  targetExperts?: number;
  seed: number;
  /** Method parameters (EEP budget, population, …; `samples` for EEP's calibration sequences). */
  parameters?: Record<string, unknown>;
  singleExpertShare?: number;
  /**
   * EEP: continue the search of an earlier plan (its layers open the population, ahead of the
   * heuristics'); a merged plan continues in the merge phase unless `phases` says otherwise.
   */
  resume?: { file: string; plan: MoePlan };
  signal?: AbortSignal;
  onProgress?: (message: string, eep?: EepProgress) => void;
}

export interface PlanRecord {
  /** The model folder and calibration files as the plan writes them (relative paths). */
  modelFolder: string;
  datasets: string[];
  profile?: string;
}

const EEP_KEYS = ['populationSize', 'generations', 'eliteSize', 'budget', 'phases', 'sigma', 'mutationRate', 'significance', 'neuronAlignment'] as const;

/** The generatePlan method object for a method name and the request's free-form parameters. */
export function planMethod(name: GenerateMethodName, parameters: Record<string, unknown> = {}): PlanMethod {
  const numberParameter = (key: string): number | undefined => {
    const value = parameters[key];
    if (value === undefined) return undefined;
    if (typeof value !== 'number' || !Number.isFinite(value)) throw new UserError(`The ${name} parameter "${key}" must be a number.`);
    return value;
  };
  switch (name) {
    case 'naee':
      return { name, ...defined({ exhaustiveLimit: numberParameter('exhaustiveLimit') }) };
    case 'uncurl': {
      const similarity = parameters.similarity;
      if (similarity !== undefined && !UNCURL_SIMILARITIES.includes(similarity as UncurlSimilarity)) {
        throw new UserError(`The uncurl parameter "similarity" must be ${UNCURL_SIMILARITIES.map((x) => `"${x}"`).join(' or ')}.`);
      }
      const neuronAlignment = parameters.neuronAlignment;
      if (neuronAlignment !== undefined && typeof neuronAlignment !== 'boolean') throw new UserError('The uncurl parameter "neuronAlignment" must be true or false.');
      return { name, ...defined({ restarts: numberParameter('restarts'), similarity: similarity as UncurlSimilarity | undefined, neuronAlignment }) };
    }
    case 'adaptiveGating': {
      const bound = numberParameter('maxLossIncrease');
      if (bound !== undefined && bound < 0) throw new UserError('The adaptiveGating parameter "maxLossIncrease" is a loss increase in nats, 0 or more.');
      return { name, ...defined({ maxLossIncrease: bound }) };
    }
    case 'eep': {
      const method: Record<string, unknown> = { name };
      for (const key of EEP_KEYS) {
        if (parameters[key] === undefined) continue;
        if (key === 'neuronAlignment') {
          if (typeof parameters.neuronAlignment !== 'boolean') throw new UserError('The eep parameter "neuronAlignment" must be true or false.');
          method.neuronAlignment = parameters.neuronAlignment;
        } else if (key === 'phases') {
          const phases = parameters.phases;
          if (!Array.isArray(phases) || phases.length === 0 || !phases.every((p) => p === 'prune' || p === 'merge')) throw new UserError('The eep parameter "phases" must list "prune" and/or "merge".');
          method.phases = phases;
        } else {
          method[key] = numberParameter(key);
        }
      }
      return method as PlanMethod;
    }
    default:
      return { name };
  }
}

/**
 * `keepShare` (0 < x ≤ 1): a global expert budget, round(x × all routed experts), shared out across
 * layers by their measured marginal loss (methods/layerBudget.ts) instead of the same count per layer.
 */
async function expertBudget(calibration: Calibration, options: PlanRequestOptions): Promise<{ share: number; total: number; perLayer: Record<number, number> } | undefined> {
  const share = options.parameters?.keepShare;
  if (share === undefined) return undefined;
  if (typeof share !== 'number' || !(share > 0 && share <= 1)) throw new UserError('The parameter "keepShare" is the share of all experts to keep, above 0 and at most 1.');
  options.onProgress?.('Measuring each layer\'s loss at every expert count (global expert budget)');
  const curves = await calibration.layerCostCurves(typeof options.parameters?.samples === 'number' ? options.parameters.samples : undefined, options.signal);
  const all = curves.reduce((sum, c) => sum + c.numExperts, 0);
  const floor = curves.reduce((sum, c) => sum + c.minimum, 0);
  const total = Math.max(floor, Math.round(share * all));
  return { share, total, perLayer: allocateExperts(curves, total) };
}

/** An earlier plan to resume an EEP search from, read and checked (a user's file: errors are theirs). */
export function readPlanToResume(file: string): { file: string; plan: MoePlan } {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new UserError(`Cannot read ${file}: ${(error as Error).message}`);
  }
  const parsed = parsePlan(text);
  if (!parsed.plan || !parsed.valid) throw new UserError(`${path.basename(file)} is not a valid plan: ${parsed.problems.filter((p) => p.severity === 'error').map((p) => p.message).join('; ')}`);
  return { file, plan: parsed.plan };
}

/** The request's `repairs` parameter: a list of repair names (none when absent). */
export function planRepairs(value: unknown): Repair[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || !value.every((r) => REPAIRS.includes(r as Repair))) {
    throw new UserError(`The parameter "repairs" must list ${REPAIRS.map((r) => `"${r}"`).join(' and/or ')}.`);
  }
  return value as Repair[];
}

/** A plan object for the calibration (not written anywhere). */
export async function makePlan(calibration: Calibration, options: PlanRequestOptions, record: PlanRecord): Promise<MoePlan> {
  const method = planMethod(options.method, options.parameters);
  if (options.resume) {
    if (method.name !== 'eep' || options.resume.plan.method.name !== 'eep') throw new UserError('Only an EEP search resumes, from an EEP plan.');
    if (options.parameters?.phases === undefined && options.resume.plan.layers.some((l) => l.mergeMatrix || l.routerMap)) (method as { phases?: string[] }).phases = ['merge'];
  }
  const repairs = planRepairs(options.parameters?.repairs);
  const calibrationParameters: CalibrationParameters = {
    samples: typeof options.parameters?.samples === 'number' ? options.parameters.samples : undefined,
    gatingQuality: method.name === 'adaptiveGating' && method.maxLossIncrease !== undefined,
    repairs: repairs.length > 0,
  };
  const needsStatistics = options.singleExpertShare !== undefined;
  const budget = await expertBudget(calibration, options);
  const target: ExpertTarget | undefined = budget?.perLayer ?? options.targetExperts;
  if (['frequency', 'softCount', 'reap', 'uncurl', 'naee'].includes(options.method) || needsStatistics) options.onProgress?.('Profiling the calibration data');
  if (options.method === 'naee') options.onProgress?.('Computing every expert\'s output on the calibration tokens');
  if (options.method === 'eep') options.onProgress?.('Starting from the pruning heuristics (frequency, soft count, REAP, NAEE)');
  const inputs = await calibration.inputsFor(method.name, calibrationParameters, { needsStatistics, target, signal: options.signal });
  if (options.resume) inputs.initial = [options.resume.plan.layers, ...(inputs.initial ?? [])];
  if (method.name === 'eep') options.onProgress?.(`Searching (EEP): ${(await eepEstimate(calibration, method, calibrationParameters, target!, inputs.alignment)).summary}`);
  else options.onProgress?.(options.method === 'naee' ? 'Searching expert subsets (NAEE)' : calibrationParameters.gatingQuality ? 'Measuring each layer\'s loss at candidate thresholds' : 'Choosing experts');
  const plan = await generatePlan(method, inputs, {
    spec: calibration.identity.spec,
    model: { folder: record.modelFolder, fingerprint: calibration.identity.fingerprint },
    calibration: { datasets: record.datasets, ...(record.profile ? { profile: record.profile } : {}) },
    dtype: await calibration.dtype(),
    targetExperts: target,
    seed: options.seed,
    singleExpertShare: options.singleExpertShare,
    repairs,
    signal: options.signal,
    onGeneration: (progress) => options.onProgress?.(eepProgressMessage(progress), progress),
  });
  if (options.resume) {
    const previous = options.resume.plan.method.parameters;
    plan.method.parameters = { ...plan.method.parameters, resumedFrom: { plan: path.basename(options.resume.file), evaluations: previous.evaluations, bestFitness: previous.bestFitness } };
  }
  if (budget) plan.method.parameters = { ...plan.method.parameters, keepShare: budget.share, expertBudget: { total: budget.total, allocation: 'marginalLoss' } };
  return plan;
}

export interface GeneratePlanFileOptions extends PlanRequestOptions {
  model: string;
  calibration: CalibrationFile[];
  profilePath?: string;
  /** Where to write; refused when it exists. */
  output: string;
  /** Paths in the plan are written relative to this folder when inside it (else relative to the plan's folder). */
  workspaceFolder?: string;
  /** Calibration rows read per file (default 256). */
  maxRows?: number;
  threads?: number;
  runtimes?: RuntimePool;
}

/**
 * The plan as written, and warnings for the user (sentences): merges of experts the calibration data
 * relies on (`heavyMerges`).
 */
export async function generatePlanFile(options: GeneratePlanFileOptions): Promise<{ planPath: string; plan: MoePlan; warnings: string[] }> {
  const planPath = path.resolve(options.output);
  if (!planPath.endsWith('.moeplan.json')) throw new UserError(`A plan file's name ends in .moeplan.json; ${path.basename(planPath)} does not.`);
  if (fs.existsSync(planPath)) throw new UserError(`${planPath} already exists; choose another name (plans are never overwritten).`);
  const identity = await modelIdentity(options.model);
  checkTargetExperts(options.targetExperts, identity.spec);
  const model = await (options.runtimes ?? sharedRuntimes).get(identity, options.threads ?? 0);
  options.onProgress?.('Reading the calibration data');
  const maxRows = options.maxRows ?? DEFAULT_CALIBRATION_ROWS;
  const profilePath =
    options.profilePath ??
    (await savedProfileOf(options.calibration, identity, options.workspaceFolder)) ??
    (await profileCalibration(options.calibration, identity, { workspaceFolder: options.workspaceFolder, maxRows, threads: options.threads, runtimes: options.runtimes, signal: options.signal, onProgress: options.onProgress }));
  const calibration = await Calibration.load(model, identity, options.calibration, { profilePath, maxRows });
  try {
    if (options.resume && options.resume.plan.model.fingerprint && options.resume.plan.model.fingerprint !== identity.fingerprint) {
      throw new UserError(`${path.basename(options.resume.file)} was made for other weights than ${identity.folder}; it cannot be resumed on this model.`);
    }
    const written = (file: string) => planRelativePath(file, planPath, options.workspaceFolder);
    const plan = await makePlan(calibration, options, {
      modelFolder: written(identity.folder),
      datasets: calibration.files.map(written),
      ...(profilePath ? { profile: written(path.resolve(profilePath)) } : {}),
    });
    const warnings = await mergeWarnings(plan, calibration, options.signal);
    await fs.promises.mkdir(path.dirname(planPath), { recursive: true });
    try {
      await fs.promises.writeFile(planPath, formatPlan(plan), { flag: 'wx' });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') throw new UserError(`${planPath} already exists; choose another name (plans are never overwritten).`);
      throw error;
    }
    return { planPath, plan, warnings };
  } finally {
    await calibration.close();
  }
}

/**
 * A path as a plan stores it: relative to the workspace folder when both the plan and the file are
 * inside it, else to the plan's folder (readers look in the plan's folder and its ancestors, so a plan
 * written outside the workspace must not use workspace-relative paths); forward slashes.
 */
export function planRelativePath(file: string, planPath: string, workspaceFolder?: string): string {
  const inside = (base: string, target: string) => {
    const relative = path.relative(base, target);
    return relative !== '' && !relative.startsWith('..') && !path.isAbsolute(relative) ? relative : undefined;
  };
  const workspace = workspaceFolder && path.resolve(workspaceFolder);
  const relative = (workspace && inside(workspace, planPath) && inside(workspace, file)) || path.relative(path.dirname(planPath), file);
  return relative.split(path.sep).join('/') || '.';
}

/**
 * The workspace's saved profile of the one calibration file, when it is current (same weights, same
 * bytes, same field): the plan is made from its statistics and records it, so the editor's expert
 * hovers and merge warnings have the figures the plan came from.
 */
async function savedProfileOf(calibration: CalibrationFile[], identity: ModelIdentity, workspaceFolder?: string): Promise<string | undefined> {
  if (calibration.length !== 1 || !workspaceFolder) return undefined;
  const [{ file, field }] = calibration;
  const candidate = defaultProfilePath(workspaceFolder, file, identity.folder);
  if (!fs.existsSync(candidate)) return undefined;
  try {
    const profile = await loadProfile(candidate);
    const sameField = field === undefined || JSON.stringify(field) === JSON.stringify(profile.dataset.field);
    if (profile.model.fingerprint !== identity.fingerprint || !sameField) return undefined;
    return profile.dataset.contentSha256 === (await fileSha256(file)) ? candidate : undefined;
  } catch (error) {
    if (error instanceof UserError) return undefined;
    throw error;
  }
}

/** Before any calibration work: a count the model cannot keep is the user's mistake, said at once. */
function checkTargetExperts(target: ExpertTarget | undefined, spec: ModelSpec): void {
  if (target === undefined) return;
  for (const layer of spec.layers) {
    if (layer.kind !== 'moe') continue;
    const count = typeof target === 'number' ? target : target[layer.index];
    if (count === undefined) continue;
    const { numExperts } = layer.moe;
    if (!Number.isInteger(count) || count < 1 || count > numExperts) {
      throw new UserError(`Layer ${layer.index} has ${numExperts} experts, so a plan keeps 1 to ${numExperts} of them, not ${count}.`);
    }
  }
}

function defined<T extends Record<string, unknown>>(object: T): Partial<T> {
  return Object.fromEntries(Object.entries(object).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** EEP's whole search: a pass per generation with its candidates side by side (each layer loaded once per generation), and the merge phase's merged layers. */
async function eepEstimate(calibration: Calibration, method: PlanMethod, parameters: CalibrationParameters, target: ExpertTarget, alignment?: AlignmentSource): Promise<WorkEstimate> {
  const moe = calibration.identity.spec.layers.flatMap((l) => (l.kind === 'moe' ? [l] : []));
  const kept = typeof target === 'number' ? target : (Object.values(target)[0] ?? moe[0]?.moe.numExperts ?? 1);
  const eep = { ...DEFAULT_EEP_PARAMETERS, ...(method as Partial<EepParameters>) };
  const work = eepWork(eep, moe.length);
  const aligns = alignment && eep.neuronAlignment && work.mergedLayerBuilds > 0;
  const aligning = aligns ? await measureEepAlignment(alignment, moe.map((l) => ({ layer: l.index, numExperts: l.moe.numExperts, intermediate: l.moe.expert.intermediateSize })), kept) : undefined;
  const alongside = aligning && { seconds: aligning.seconds, what: `aligning the neurons of ${aligning.pairs} merged experts` };
  return calibration.evaluator(parameters.samples ?? DEFAULT_EEP_SAMPLES).estimate({ ...eepWorkShape(work, kept, moe[0]?.moe.numExperts ?? kept), ...(alongside ? { alongside } : {}) });
}

/** One line per EEP generation; says so when a candidate leads the plan only within the calibration noise. */
export function eepProgressMessage(progress: EepProgress): string {
  const noise = progress.candidateFitness > progress.bestFitness ? `; a candidate reached ${progress.candidateFitness.toFixed(4)}, not significantly better` : '';
  return `EEP ${progress.phase} generation ${progress.generation}: best fitness ${progress.bestFitness.toFixed(4)}${noise} (${progress.evaluations} evaluations)`;
}

/** Only merged plans are checked; their methods have computed the calibration statistics already. */
async function mergeWarnings(plan: MoePlan, calibration: Calibration, signal?: AbortSignal): Promise<string[]> {
  if (!plan.layers.some((layer) => layer.mergeMatrix)) return [];
  const statistics = await calibration.statistics(signal);
  const warning = describeHeavyMerges(heavyMerges(plan.layers, (layer) => {
    const counts = statistics.find((s) => s.layer === layer)?.tokenCount;
    return counts && sharesFromCounts(counts);
  }));
  return warning ? [warning] : [];
}
