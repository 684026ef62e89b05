/**
 * The plan file (`*.moeplan.json`) as the export stage sees it: the plan document adapted to an
 * `ExportPlan`, after checking that it was made for the checkpoint it names. The plan's own
 * conventions (a missing matrix is the one-hot selection of `keptExperts`, a top-k above the kept
 * count means "all kept experts") carry over unchanged, so export computes what the runtime ran.
 */

import { resolve } from 'node:path';
import { MAX_METADATA_BYTES, readRegularFile } from '../regularFile';
import { CheckpointError, loadCheckpoint, type CheckpointLoad, type CheckpointWeightsLoad } from '../checkpoint';
import type { ModelSpec } from '../checkpoint/modelSpec';
import { analyseHfExactness, parsePlan, type MoePlan, type PlanEvaluation } from '../plan';
import { resolvePlanPath } from '../lsp/plan/resources';
import { ExportError } from './exportErrors';
import type { ExportLayerPlan, ExportPlan } from './exportPlan';

/** How the model card names each method. */
const METHOD_LABELS: Record<string, string> = {
  manual: 'a hand-written plan',
  random: 'random pruning',
  frequency: 'frequency pruning',
  softCount: 'soft-count pruning',
  reap: 'REAP pruning',
  naee: 'NAEE pruning',
  uncurl: 'UNCURL merging',
  eep: 'EEP (evolutionary expert pruning and merging)',
  adaptiveGating: 'adaptive gating',
};

/** Throws `invalidPlan` with every way the plan's `model` block differs from the checkpoint. */
export function checkPlanMatchesModel(plan: MoePlan, spec: ModelSpec, modelFolder: string, planFile?: string): void {
  const moeLayers = spec.layers.flatMap((layer) => (layer.kind === 'moe' ? [layer] : []));
  const experts = [...new Set(moeLayers.map((layer) => layer.moe.numExperts))];
  const problems: string[] = [];
  if (plan.model.architecture !== spec.architecture) problems.push(`the plan is for ${plan.model.architecture}, the model is ${spec.architecture}`);
  if (!experts.includes(plan.model.numExperts)) problems.push(`the plan is for ${plan.model.numExperts} experts per layer, the model has ${experts.join(', ')}`);
  if (plan.model.numLayers !== spec.layers.length) problems.push(`the plan is for ${plan.model.numLayers} layers, the model has ${spec.layers.length}`);
  const moeIndices = new Set(moeLayers.map((layer) => layer.index));
  const notMoe = (plan.layers ?? []).filter((layer) => !moeIndices.has(layer.layer)).map((layer) => layer.layer);
  if (notMoe.length) problems.push(`layer${notMoe.length > 1 ? 's' : ''} ${notMoe.join(', ')} ${notMoe.length > 1 ? 'are not MoE layers' : 'is not an MoE layer'} of the model`);
  if (problems.length) {
    throw new ExportError('invalidPlan', `${planFile ?? 'The plan'} does not match the model at ${modelFolder}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

/** The plan as the export stage consumes it; `spec` must be the model the plan was checked against. */
export function toExportPlan(plan: MoePlan, spec: ModelSpec): ExportPlan {
  const layers: Record<number, ExportLayerPlan> = {};
  for (const layer of plan.layers) {
    const layerSpec = spec.layers[layer.layer];
    if (layerSpec?.kind !== 'moe') continue;
    layers[layer.layer] = {
      keptExperts: [...layer.keptExperts],
      ...(layer.mergeMatrix ? { mergeMatrix: layer.mergeMatrix } : {}),
      ...(layer.routerMap ? { routerMap: layer.routerMap } : {}),
      ...(layer.outputScale ? { outputScale: layer.outputScale } : {}),
      ...(layer.neuronOrder ? { neuronOrder: layer.neuronOrder } : {}),
      // The runtime drops slots beyond the kept experts (their probability is 0), so k caps at E'.
      topK: Math.min(layer.topK ?? layerSpec.moe.topK, layer.keptExperts.length),
      ...(layer.adaptiveThreshold !== undefined ? { adaptiveThreshold: layer.adaptiveThreshold } : {}),
    };
  }
  const exactness = analyseHfExactness(plan.layers, spec);
  const target = plan.method.parameters?.targetExperts;
  const label = METHOD_LABELS[plan.method.name] ?? plan.method.name;
  return {
    layers,
    huggingFace: { exact: exactness.exact, reasons: exactness.reasons },
    // Neuron orders are in the exported weights already, and on a real model they are megabytes of
    // integers (OLMoE-1B-7B: 64 x 1024 a layer) that config.json would carry one per line.
    planRecord: { ...plan, layers: plan.layers.map(({ neuronOrder: _applied, ...layer }) => layer) },
    evaluation: evaluationRecord(plan.evaluations ?? []),
    method: typeof target === 'number' ? `${label}, ${target} experts per layer` : label,
    calibrationData: plan.calibration?.datasets?.length ? plan.calibration.datasets.join(', ') : undefined,
  };
}

/** The plan's evaluations in the shape the model card renders, each entry keeping everything the plan recorded. */
function evaluationRecord(evaluations: readonly PlanEvaluation[]): ExportPlan['evaluation'] {
  if (!evaluations.length) return undefined;
  const datasets = [...new Set(evaluations.map((e) => e.dataset))];
  return {
    dataset: datasets.join(', '),
    metrics: evaluations.map((e) => ({
      ...e,
      name: datasets.length > 1 ? `${e.metric} (${e.dataset})` : e.metric,
      before: e.baseline,
      after: e.value,
    })),
  };
}

export interface PlanForExport<Source extends CheckpointWeightsLoad = CheckpointLoad> {
  planFile: string;
  plan: MoePlan;
  /** The checkpoint the plan names, open: close `source.weights` when done. */
  source: Source;
  exportPlan: ExportPlan;
}

/**
 * Reads a plan file, opens the model it names and checks the plan against it. A relative model
 * folder resolves against the plan's folder, then the workspace folders (plans are written with
 * paths relative to the workspace; the language server and the CLI run with the workspace as their
 * working directory), never against the folders above: a plan from elsewhere must not pick up
 * whatever model happens to sit in some parent folder.
 */
export function loadPlanForExport(planFile: string, workspaceFolders: readonly string[] = [process.cwd()], unsavedText?: string): Promise<PlanForExport> {
  return openPlanModel(planFile, workspaceFolders, unsavedText, (folder) => loadCheckpoint(folder));
}

/**
 * As `loadPlanForExport`, without the tokenizer: a preview reads config and tensor headers only, so
 * it neither pays for building the tokenizer nor fails on a tokenizer.json it would never use.
 */
export function loadPlanForPreview(planFile: string, workspaceFolders: readonly string[] = [process.cwd()], unsavedText?: string): Promise<PlanForExport<CheckpointWeightsLoad>> {
  return openPlanModel(planFile, workspaceFolders, unsavedText, (folder) => loadCheckpoint(folder, { tokenizer: false }));
}

async function openPlanModel<Source extends CheckpointWeightsLoad>(planFile: string, workspaceFolders: readonly string[], unsavedText: string | undefined, load: (folder: string) => Promise<Source>): Promise<PlanForExport<Source>> {
  const file = resolve(planFile);
  // The editor's text when given (a live preview of unsaved edits); paths still resolve against the file's place.
  let text: string;
  try {
    // A plan is kilobytes; /dev/zero or a FIFO named like one would otherwise be read forever.
    text = unsavedText ?? (await readRegularFile(file, MAX_METADATA_BYTES)).toString('utf8');
  } catch (error) {
    throw new ExportError('invalidPlan', `Cannot read the plan ${file}: ${(error as Error).message}`);
  }
  const shape = parsePlan(text);
  if (!shape.plan?.model?.folder) {
    throw new ExportError('invalidPlan', `${file} is not a plan file with a model folder${problemList(shape.problems)}`);
  }
  const folder = await resolvePlanPath(shape.plan.model.folder, file, workspaceFolders);
  const source = await load(folder).catch((error: unknown) => {
    // Say which plan named the folder: the model's own message names only the model's files.
    if (error instanceof CheckpointError) throw new CheckpointError(error.code, `${file} names the model ${folder}: ${error.message}`, error.file);
    throw error;
  });
  try {
    const parsed = parsePlan(text, source.spec);
    if (!parsed.plan) throw new ExportError('invalidPlan', `${file} is not a plan file${problemList(parsed.problems)}`);
    checkPlanMatchesModel(parsed.plan, source.spec, folder, file);
    if (!parsed.valid) throw new ExportError('invalidPlan', `${file} has errors; fix them before exporting${problemList(parsed.problems)}`);
    return { planFile: file, plan: parsed.plan, source, exportPlan: toExportPlan(parsed.plan, source.spec) };
  } catch (error) {
    await source.weights.close();
    throw error;
  }
}

function problemList(problems: readonly { severity: string; message: string }[]): string {
  const errors = problems.filter((p) => p.severity === 'error');
  return errors.length ? `:\n${errors.map((p) => `  - ${p.message}`).join('\n')}` : '.';
}


