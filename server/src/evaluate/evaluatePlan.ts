/**
 * Evaluating a plan file: the model it names (checked to be the one it was made for), each held-out
 * dataset tokenised once, the full model's baseline from the cache, the plan's values, and the plan's
 * text with those results recorded.
 */
import * as path from 'node:path';
import type { EvaluationMetric } from '../../../common/protocol';
import { ExportError } from '../export';
import type { CheckpointWeightsLoad } from '../checkpoint';
import { loadPlanForPreview, type PlanForExport } from '../export/fromPlan';
import { UserError } from '../errors';
import type { ModelSpec } from '../checkpoint/modelSpec';
import { formatPlan, toRuntimePlan, type MoePlan, type PlanEvaluation, type PlanLayer } from '../plan';
import { modelIdentity, type ModelIdentity } from '../profile/run/modelIdentity';
import { sharedRuntimes } from '../profile/run/profileDataset';
import type { OpenModel, RuntimePool } from '../profile/run/runtimePool';
import { loadChatTemplate } from '../profile/chatTemplate';
import type { FieldSpec } from '../profile/types';
import { forwardProgressMessage, type ForwardProgress, type RuntimePlan } from '../runtime';
import { baselineFolder, cachedBaseline } from './baselines';
import { Evaluator, type EvaluationResult } from './evaluator';
import { DEFAULT_SEQUENCE_LENGTH, loadSamples, type LoadedSamples } from './samples';

/** The plan as the runtime runs it (a merged layer with fewer rows than the model's top-k runs them all). */
export function runtimePlanFor(layers: PlanLayer[], spec: ModelSpec): RuntimePlan {
  return toRuntimePlan(layers, (index) => {
    const moe = spec.layers[index];
    return moe?.kind === 'moe' ? moe.moe.numExperts : 0;
  });
}

export interface DatasetSpec {
  file: string;
  field?: FieldSpec;
}

export interface EvaluateProgress {
  message: string;
  /** 0..1 over the whole request. */
  fraction: number;
  /** Sequences (or questions) of the current dataset done and in all, while the plan runs on it. */
  done?: number;
  total?: number;
}

export interface EvaluationRun {
  model: OpenModel;
  identity: ModelIdentity;
  /** Baselines are saved under `<workspaceFolder>/.moe-studio/baselines/` when given. */
  workspaceFolder?: string;
  maxRows?: number;
  sequenceLength?: number;
  signal?: AbortSignal;
}

/**
 * A loaded plan, checked against its model (architecture, experts, layers and, when both have one,
 * fingerprint). The model is opened without its tokenizer: the plan preview reads config and
 * weights only, and an evaluation tokenizes through the runtime it loads afterwards.
 */
export async function loadCheckedPlan(planFile: string, unsavedText?: string, workspaceFolders: readonly string[] = []): Promise<PlanForExport<CheckpointWeightsLoad> & { identity: ModelIdentity }> {
  let loaded: PlanForExport<CheckpointWeightsLoad>;
  try {
    // The workspace folders the request knows (a plan in plans/ names its model relative to one), then
    // the working directory, which is the workspace for a single-folder editor and for the CLI.
    loaded = await loadPlanForPreview(planFile, [...workspaceFolders, process.cwd()], unsavedText);
  } catch (error) {
    if (error instanceof ExportError) throw new UserError(error.message);
    throw error;
  }
  try {
    const identity = await modelIdentity(loaded.source.folder);
    const { fingerprint } = loaded.plan.model;
    if (fingerprint && fingerprint !== identity.fingerprint) {
      throw new UserError(`The plan ${path.basename(planFile)} was made for another model: its fingerprint differs from the weights at ${loaded.source.folder} (same shape, different weights or tokenizer). Generate the plan again for this model.`);
    }
    return { ...loaded, identity };
  } catch (error) {
    await loaded.source.weights.close();
    throw error;
  }
}

/** The full model's values of every metric the data supports; KL and agreement are 0 and 1 by definition. */
export async function baselineFor(run: EvaluationRun, samples: LoadedSamples): Promise<EvaluationResult> {
  const evaluator = new Evaluator(run.model.runtime, samples.samples);
  return cachedBaseline(
    { fingerprint: run.identity.fingerprint, contentSha256: samples.contentSha256, field: samples.field, maxRows: run.maxRows, sequenceLength: run.sequenceLength ?? DEFAULT_SEQUENCE_LENGTH },
    async () => {
      if (samples.samples.kind === 'choice') return evaluator.evaluate(undefined, ['accuracy'], { signal: run.signal });
      const result = await evaluator.evaluate(undefined, ['loss', 'perplexity'], { signal: run.signal });
      return { ...result, values: { ...result.values, kl: 0, top1Agreement: 1 } };
    },
    run.workspaceFolder ? baselineFolder(run.workspaceFolder) : undefined,
  );
}

export async function loadDataset(run: EvaluationRun, dataset: DatasetSpec): Promise<LoadedSamples> {
  const chat = dataset.field?.kind === 'chat' || dataset.field === undefined ? await loadChatTemplate(run.identity.folder) : undefined;
  return loadSamples(dataset.file, run.model.tokenizer, { field: dataset.field, maxRows: run.maxRows, sequenceLength: run.sequenceLength, chat });
}

export interface EvaluatePlanFileOptions {
  plan: string;
  datasets: DatasetSpec[];
  maxRows?: number;
  workspaceFolder?: string;
  threads?: number;
  runtimes?: RuntimePool;
  signal?: AbortSignal;
  onProgress?: (progress: EvaluateProgress) => void;
}

export interface EvaluatePlanFileResult {
  plan: MoePlan;
  evaluations: PlanEvaluation[];
  /** The plan with the evaluated datasets' entries replaced by these results (other datasets' entries kept). */
  updatedPlanText: string;
}

export async function evaluatePlanFile(options: EvaluatePlanFileOptions): Promise<EvaluatePlanFileResult> {
  if (options.datasets.length === 0) throw new UserError('Name at least one dataset to evaluate on.');
  const planFile = path.resolve(options.plan);
  const loaded = await loadCheckedPlan(planFile, undefined, options.workspaceFolder ? [options.workspaceFolder] : []);
  await loaded.source.weights.close();
  const { plan, identity } = loaded;
  const spec = identity.spec;
  const runtimePlan = runtimePlanFor(plan.layers, spec);
  const model = await (options.runtimes ?? sharedRuntimes).get(identity, options.threads ?? 0);
  const run: EvaluationRun = { model, identity, workspaceFolder: options.workspaceFolder, maxRows: options.maxRows, signal: options.signal };
  const evaluations: PlanEvaluation[] = [];
  const date = new Date().toISOString().slice(0, 10);
  const steps = options.datasets.length * 2;
  let step = 0;
  const report = (message: string, counts?: { done: number; total: number }) =>
    options.onProgress?.({ message, fraction: Math.min(1, (step + (counts ? counts.done / Math.max(1, counts.total) : 0)) / steps), ...counts });
  for (const dataset of options.datasets) {
    const name = path.basename(dataset.file);
    report(`Reading ${name}`);
    const samples = await loadDataset(run, dataset);
    report(`Full model on ${name}`);
    const baseline = await baselineFor(run, samples);
    step++;
    const evaluator = new Evaluator(model.runtime, samples.samples);
    report(`Plan on ${name}: ${(await evaluator.estimate({ withFullModel: samples.samples.kind === 'text' })).summary}`);
    // Layer by layer only when layers stream: resident forwards are batches of milliseconds.
    const onForwardProgress = model.runtime.memory.policy === 'resident' ? undefined : (p: ForwardProgress) => report(`Plan on ${name}: ${forwardProgressMessage(p)}`, { done: p.workSetsDone * p.layers + p.layersDone, total: p.workSets * p.layers * 2 });
    const result = await evaluator.evaluate(runtimePlan, evaluator.metrics, { signal: options.signal, onProgress: (done, total) => report(`Plan on ${name}`, { done, total }), onForwardProgress });
    step++;
    const written = planDatasetName(samples.file, planFile, options.workspaceFolder);
    for (const metric of evaluator.metrics as EvaluationMetric[]) {
      evaluations.push({ dataset: written, metric, value: result.values[metric]!, baseline: baseline.values[metric], samples: result.samples, date });
    }
  }
  const evaluated = new Set(evaluations.map((e) => e.dataset));
  const updated: MoePlan = { ...plan, evaluations: [...(plan.evaluations ?? []).filter((e) => !evaluated.has(e.dataset)), ...evaluations] };
  return { plan: updated, evaluations, updatedPlanText: formatPlan(updated) };
}

/** A dataset as the plan names it: relative to the workspace folder when inside it, else to the plan's folder. */
function planDatasetName(file: string, planFile: string, workspaceFolder?: string): string {
  const base = workspaceFolder && !path.relative(workspaceFolder, file).startsWith('..') ? workspaceFolder : path.dirname(planFile);
  return path.relative(base, file).split(path.sep).join('/');
}
