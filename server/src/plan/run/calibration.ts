/**
 * A model and its calibration data, with everything the plan methods need derived from them on first
 * use and kept: routing statistics (one captured forward), NAEE's per-layer reconstruction, EEP's
 * evaluator. A sweep makes many plans from one of these without repeating any of that work.
 */
import * as path from 'node:path';
import { loadCheckpoint, type CheckpointLoad } from '../../checkpoint';
import type { DType } from '../../checkpoint/modelSpec';
import { Evaluator } from '../../evaluate/evaluator';
import { loadSamples, type ChoiceItem, type EvaluationSamples } from '../../evaluate/samples';
import { UserError } from '../../errors';
import { loadProfile } from '../../profile/profileFile';
import { DEFAULT_GATING_THRESHOLDS } from '../../profile/statistics';
import type { ModelIdentity } from '../../profile/run/modelIdentity';
import type { OpenModel } from '../../profile/run/runtimePool';
import type { FieldSpec } from '../../profile/types';
import { moeLayerShapes, type PlanInputs, type PlanMethod } from '../generatePlan';
import type { LayerCostCurve } from '../methods/layerBudget';
import { type LayerErrorFunction, naeePruning } from '../methods/naee';
import { frequencyPruning, reapPruning, softCountPruning } from '../methods/ranking';
import type { PlanLayer } from '../planFile';
import type { ExpertTarget, LayerStatistics, MoeLayerShape } from '../statistics';
import { LayerReconstruction } from './layerReconstruction';
import type { AlignmentSource } from '../methods/neuronAlignment';
import { checkpointAlignmentSource } from './alignmentSource';
import { captureCalibration, toPlanStatistics, type CalibrationCapture } from './statistics';

export type MethodName = PlanMethod['name'];

export interface CalibrationFile {
  file: string;
  field?: FieldSpec;
}

export interface CalibrationOptions {
  /** Rows read per calibration file (default 256). */
  maxRows?: number;
  /** Tokens per sequence (default 256). */
  sequenceLength?: number;
  /** A saved profile of the calibration data, used instead of profiling it here. */
  profilePath?: string;
  /** NAEE: calibration tokens per layer the reconstruction error is measured on (default 1024). */
  naeeTokens?: number;
}

/** Method parameters a plan request may carry besides the method's own. */
export interface CalibrationParameters {
  /** EEP and adaptive gating within a loss bound: calibration sequences each candidate is scored on (default 32). */
  samples?: number;
  /** Adaptive gating within a loss bound: score thresholds layer by layer. */
  gatingQuality?: boolean;
  /** Repairs follow the method: they read the layer reconstruction. */
  repairs?: boolean;
}

/** Calibration rows read per file unless the request says otherwise. */
export const DEFAULT_CALIBRATION_ROWS = 256;
export const DEFAULT_EEP_SAMPLES = 32;
export const DEFAULT_NAEE_TOKENS = 1024;

export class Calibration {
  private capture?: Promise<CalibrationCapture>;
  private reconstruction?: Promise<LayerReconstruction>;
  private checkpoint?: Promise<CheckpointLoad>;
  private readonly evaluators = new Map<number, Evaluator>();
  private profileStatistics?: Promise<LayerStatistics[]>;
  /** Cost curves by sample count: every method and count planned with a global budget shares them. */
  private readonly costCurves = new Map<number, Promise<LayerCostCurve[]>>();

  private constructor(
    readonly model: OpenModel,
    readonly identity: ModelIdentity,
    /** Every calibration row as text sequences (a multiple-choice row as prompt + its correct choice). */
    readonly sequences: Int32Array[],
    /** The multiple-choice items when every calibration file is multiple choice: EEP then scores accuracy. */
    readonly choiceItems: ChoiceItem[] | undefined,
    readonly files: string[],
    private readonly profilePath?: string,
    private readonly naeeTokens = DEFAULT_NAEE_TOKENS,
  ) {}

  static async load(model: OpenModel, identity: ModelIdentity, files: CalibrationFile[], options: CalibrationOptions = {}): Promise<Calibration> {
    if (files.length === 0) throw new UserError('Name at least one calibration dataset.');
    const loaded = [];
    for (const { file, field } of files) loaded.push(await loadSamples(file, model.tokenizer, { field, maxRows: options.maxRows ?? DEFAULT_CALIBRATION_ROWS, sequenceLength: options.sequenceLength }));
    const sequences = loaded.flatMap(({ samples }) => samples.kind === 'text' ? samples.sequences : samples.items.map((item) => item.choices[item.label].ids));
    const allChoice = loaded.every(({ samples }) => samples.kind === 'choice');
    const choiceItems = allChoice ? loaded.flatMap(({ samples }) => (samples.kind === 'choice' ? samples.items : [])) : undefined;
    return new Calibration(model, identity, sequences, choiceItems, loaded.map((l) => l.file), options.profilePath && path.resolve(options.profilePath), options.naeeTokens);
  }

  /** The calibration's routing statistics: the saved profile's when one was named, else profiled now. */
  statistics(signal?: AbortSignal): Promise<LayerStatistics[]> {
    if (this.profilePath) {
      this.profileStatistics ??= loadProfile(this.profilePath).then((profile) => {
        if (profile.model.fingerprint && profile.model.fingerprint !== this.identity.fingerprint) {
          throw new UserError(`The profile ${path.basename(this.profilePath!)} was made with other weights than ${this.identity.folder}; profile the calibration data again.`);
        }
        return toPlanStatistics(profile);
      });
      return this.profileStatistics;
    }
    return this.captured(signal).then((c) => c.statistics);
  }

  async layerError(signal?: AbortSignal): Promise<LayerReconstruction> {
    this.reconstruction ??= (async () => {
      const capture = await this.captured(signal);
      const checkpoint = await this.openCheckpoint();
      // Every expert's output on the calibration tokens, as onnxruntime Gemms in the runtime's worker (in
      // JavaScript it ran at about 1 GFLOP/s: hours for OLMoE-1B-7B's 16 layers of 64 experts).
      return LayerReconstruction.build(this.identity.spec, checkpoint.weights, capture.layerInputs, signal, (layer, inputs, tokens) => this.model.runtime.expertOutputs(layer, inputs, tokens));
    })();
    this.reconstruction.catch(() => (this.reconstruction = undefined));
    return this.reconstruction;
  }

  /** EEP's evaluator: the first `samples` calibration sequences (or items), tokenised once, scored many times. */
  evaluator(samples = DEFAULT_EEP_SAMPLES): Evaluator {
    let evaluator = this.evaluators.get(samples);
    if (!evaluator) {
      const data: EvaluationSamples = this.choiceItems ? { kind: 'choice', items: spread(this.choiceItems, samples) } : { kind: 'text', sequences: spread(this.sequences, samples) };
      evaluator = new Evaluator(this.model.runtime, data);
      this.evaluators.set(samples, evaluator);
    }
    return evaluator;
  }

  /**
   * EEP's starting solutions: the frequency, soft-count, REAP and NAEE plans of this calibration (the
   * statistics and NAEE's expert outputs are computed once and shared with those methods).
   */
  async heuristicPlans(target: ExpertTarget, signal?: AbortSignal): Promise<PlanLayer[][]> {
    const reconstruction = await this.layerError(signal);
    return heuristicPlans(await this.statistics(signal), moeLayerShapes(this.identity.spec), target, async (layer, kept) => reconstruction.error(layer, kept), signal);
  }

  /** What `method` needs, computed (once) now. */
  async inputsFor(method: MethodName, parameters: CalibrationParameters, options: { needsStatistics: boolean; target?: ExpertTarget; signal?: AbortSignal }): Promise<PlanInputs> {
    const inputs: PlanInputs = {};
    if (options.needsStatistics || ['frequency', 'softCount', 'reap', 'uncurl'].includes(method)) inputs.statistics = await this.statistics(options.signal);
    if (parameters.repairs) inputs.repair = await this.layerError(options.signal);
    if (method === 'uncurl' || method === 'eep') inputs.alignment = await this.alignmentSource();
    if (method === 'naee') {
      const reconstruction = await this.layerError(options.signal);
      inputs.layerError = async (layer, kept) => reconstruction.error(layer, kept);
    }
    if (parameters.gatingQuality) {
      const evaluator = this.evaluator(parameters.samples ?? DEFAULT_EEP_SAMPLES);
      inputs.gatingQuality = {
        baseline: await evaluator.fitness({ layers: {} }, options.signal),
        candidates: DEFAULT_GATING_THRESHOLDS,
        // One layer gated, the rest unchanged: the prefix cache resumes the forward at that layer.
        at: (layer, threshold) => evaluator.fitness({ layers: { [layer]: { adaptiveThreshold: threshold } } }, options.signal),
      };
    }
    if (method === 'eep') {
      const evaluator = this.evaluator(parameters.samples ?? DEFAULT_EEP_SAMPLES);
      inputs.fitness = (candidate) => evaluator.score(candidate, options.signal);
      inputs.fitnessMany = (candidates) => evaluator.scoreMany(candidates, options.signal);
      if (options.target === undefined) throw new UserError('EEP needs the number of experts to keep.');
      inputs.initial = await this.heuristicPlans(options.target, options.signal);
    }
    return inputs;
  }

  /**
   * A global expert budget's cost curves: per MoE layer, the calibration loss (minus EEP's fitness on
   * `samples` sequences) with that layer alone keeping its k most-used experts, k from the model's
   * top-k to all. Layers × (E − top-k) forwards, each resuming at its layer from the prefix cache.
   */
  layerCostCurves(samples = DEFAULT_EEP_SAMPLES, signal?: AbortSignal): Promise<LayerCostCurve[]> {
    let curves = this.costCurves.get(samples);
    if (!curves) {
      curves = this.measureCostCurves(samples, signal);
      this.costCurves.set(samples, curves);
      // A cancelled or failed measurement is not remembered.
      curves.catch(() => this.costCurves.delete(samples));
    }
    return curves;
  }

  private async measureCostCurves(samples: number, signal?: AbortSignal): Promise<LayerCostCurve[]> {
    const statistics = await this.statistics(signal);
    const evaluator = this.evaluator(samples);
    const full = -(await evaluator.fitness({ layers: {} }, signal));
    const curves: LayerCostCurve[] = [];
    for (const s of statistics) {
      const E = s.tokenCount.length;
      const layer = this.identity.spec.layers[s.layer];
      const minimum = layer.kind === 'moe' ? Math.min(layer.moe.topK, E) : 1;
      const ranked = s.tokenCount.map((count, id) => ({ count, id })).sort((a, b) => b.count - a.count || a.id - b.id).map((r) => r.id);
      const cost = new Array<number>(E + 1).fill(NaN);
      cost[E] = full;
      for (let k = E - 1; k >= minimum; k--) {
        const kept = new Set(ranked.slice(0, k));
        cost[k] = -(await evaluator.fitness({ layers: { [s.layer]: { keptExperts: Array.from({ length: E }, (_, j) => kept.has(j)) } } }, signal));
      }
      curves.push({ layer: s.layer, numExperts: E, minimum, cost });
    }
    return curves;
  }

  /** UNCURL's and EEP's neuron alignment: experts' weights read from the checkpoint when a merge needs them. */
  async alignmentSource(): Promise<AlignmentSource> {
    return checkpointAlignmentSource(this.identity.spec, (await this.openCheckpoint()).weights, await this.dtype());
  }

  /** The checkpoint's storage dtype (of its expert weights), for the plan's byte savings. */
  async dtype(): Promise<DType | 'F8_E4M3'> {
    const checkpoint = await this.openCheckpoint();
    const moe = this.identity.spec.layers.find((l) => l.kind === 'moe');
    const names = moe ? this.identity.spec.tensors.layer(moe.index) : undefined;
    // GPT-OSS in MXFP4 has no float expert weight; its expert biases have the checkpoint's float dtype.
    const name = names?.expert?.(0).gate ?? (names?.fusedExperts?.mxfp4 ? names.fusedExperts.gateUpBias : names?.fusedExperts?.gateUp);
    return name ? checkpoint.weights.info(name).dtype : 'F32';
  }

  /** Releases the main-thread weight reader (the runtime stays in its pool). */
  async close(): Promise<void> {
    const checkpoint = this.checkpoint;
    this.checkpoint = undefined;
    if (checkpoint) await (await checkpoint.catch(() => undefined))?.weights.close();
  }

  private captured(signal?: AbortSignal): Promise<CalibrationCapture> {
    this.capture ??= captureCalibration(this.model.runtime, this.sequences, { inputTokens: this.naeeTokens, signal });
    this.capture.catch(() => (this.capture = undefined));
    return this.capture;
  }

  private openCheckpoint(): Promise<CheckpointLoad> {
    this.checkpoint ??= loadCheckpoint(this.identity.folder);
    return this.checkpoint;
  }
}

/** The pruning heuristics' plans, distinct, in a fixed order: EEP's seeds. REAP only where every layer has its score. */
export async function heuristicPlans(statistics: LayerStatistics[], layers: MoeLayerShape[], target: ExpertTarget, layerError?: LayerErrorFunction, signal?: AbortSignal): Promise<PlanLayer[][]> {
  const plans = [frequencyPruning(statistics, target), softCountPruning(statistics, target)];
  if (statistics.every((s) => s.reapScore)) plans.push(reapPruning(statistics, target));
  if (layerError) plans.push(await naeePruning({ layers, target, layerError, signal }));
  const seen = new Set<string>();
  return plans.filter((plan) => {
    const key = JSON.stringify(plan.map((l) => l.keptExperts));
    return !seen.has(key) && seen.add(key);
  });
}

/** `count` entries spread evenly over `all` (all of them when there are fewer): a sample that covers every calibration file. */
function spread<T>(all: T[], count: number): T[] {
  if (all.length <= count) return all;
  return Array.from({ length: count }, (_, i) => all[Math.floor((i * all.length) / count)]);
}
