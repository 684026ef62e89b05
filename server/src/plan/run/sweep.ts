/**
 * Quality against experts kept, for several methods side by side on one held-out dataset: where each
 * method's quality falls off. The calibration's statistics, NAEE's expert outputs and EEP's evaluator
 * are computed once and shared by every count; a count that keeps every expert is the full model.
 */
import * as path from 'node:path';
import type { EvaluationMetric, PlanMethodName, SweepResult } from '../../../../common/protocol';
import { baselineFor, loadDataset, runtimePlanFor, type DatasetSpec, type EvaluationRun } from '../../evaluate/evaluatePlan';
import { Evaluator } from '../../evaluate/evaluator';
import { UserError } from '../../errors';
import { modelIdentity } from '../../profile/run/modelIdentity';
import { sharedRuntimes } from '../../profile/run/profileDataset';
import type { RuntimePool } from '../../profile/run/runtimePool';
import { Calibration, type CalibrationFile } from './calibration';
import { makePlan } from './generatePlanFile';
import type { RuntimePlan } from '../../runtime';

export interface SweepOptions {
  model: string;
  methods: PlanMethodName[];
  counts: number[];
  calibration: CalibrationFile[];
  evaluation: DatasetSpec;
  metric: EvaluationMetric;
  seed: number;
  maxRows?: number;
  /** Per-method parameters (e.g. a small EEP budget), keyed by method name. */
  parameters?: Partial<Record<PlanMethodName, Record<string, unknown>>>;
  workspaceFolder?: string;
  threads?: number;
  runtimes?: RuntimePool;
  signal?: AbortSignal;
  onProgress?: (message: string, fraction: number) => void;
}

export async function runSweep(options: SweepOptions): Promise<SweepResult> {
  if (options.methods.length === 0) throw new UserError('Name at least one method to sweep.');
  const identity = await modelIdentity(options.model);
  const moe = identity.spec.layers.find((l) => l.kind === 'moe');
  const numExperts = moe?.kind === 'moe' ? moe.moe.numExperts : 0;
  const counts = options.counts.length > 0 ? options.counts : Array.from({ length: numExperts }, (_, i) => numExperts - i);
  const invalid = counts.filter((c) => !Number.isInteger(c) || c < 1 || c > numExperts);
  if (invalid.length > 0) throw new UserError(`Expert counts must be in 1..${numExperts}; got ${invalid.join(', ')}.`);
  const model = await (options.runtimes ?? sharedRuntimes).get(identity, options.threads ?? 0);
  const run: EvaluationRun = { model, identity, workspaceFolder: options.workspaceFolder, maxRows: options.maxRows, signal: options.signal };
  const samples = await loadDataset(run, options.evaluation);
  const evaluator = new Evaluator(model.runtime, samples.samples);
  if (!evaluator.metrics.includes(options.metric)) {
    throw new UserError(`${path.basename(samples.file)} is ${samples.samples.kind === 'choice' ? 'multiple-choice data, measured by accuracy' : 'text, measured by loss, perplexity, kl or top1Agreement'}; it has no ${options.metric}.`);
  }
  options.onProgress?.('Full model', 0);
  const baseline = (await baselineFor(run, samples)).values[options.metric]!;
  const calibration = await Calibration.load(model, identity, options.calibration, { maxRows: options.maxRows });
  try {
    const series: SweepResult['series'] = [];
    const total = options.methods.length * counts.length;
    let done = 0;
    for (const method of options.methods) {
      // The method's plans first, then one evaluation of all of them: each layer runs (and, when the
      // model streams, loads) once per chunk for every count.
      const plans = new Map<number, RuntimePlan>();
      for (const count of counts) {
        if (count === numExperts) continue;
        options.onProgress?.(`Sweep ${plans.size + 1}/${counts.length} of ${method} (${options.methods.indexOf(method) + 1}/${options.methods.length} methods): planning ${count} experts`, done / total);
        const plan = await makePlan(calibration, { method, targetExperts: count, seed: options.seed, parameters: options.parameters?.[method], signal: options.signal }, { modelFolder: identity.folder, datasets: calibration.files });
        plans.set(count, runtimePlanFor(plan.layers, identity.spec));
        done += 0.5;
      }
      const estimate = plans.size > 0 ? await evaluator.estimate({ variants: plans.size, withFullModel: options.metric === 'kl' || options.metric === 'top1Agreement' }) : undefined;
      options.onProgress?.(`${method}: evaluating ${plans.size} plan${plans.size === 1 ? '' : 's'}${estimate ? `, ${estimate.summary}` : ''}`, done / total);
      const results = await evaluator.evaluateMany([...plans.values()], [options.metric], { signal: options.signal });
      const byCount = new Map([...plans.keys()].map((count, i) => [count, results[i].values[options.metric]!]));
      series.push({ method, values: counts.map((count) => byCount.get(count) ?? baseline) });
      done += counts.length - plans.size * 0.5;
    }
    return { metric: options.metric, counts, baseline, series };
  } finally {
    await calibration.close();
  }
}
