/** What a plan does, layer by layer, and the config.json it would export: for the preview view and the diff editor. */
import type { PlanLayerPreview, PreviewPlanResult } from '../../../../common/protocol';
import { loadCheckedPlan } from '../../evaluate/evaluatePlan';
import { previewExport } from '../../export';
import { errorMessage } from '../../errors';
import { resolvePlanPath } from '../../lsp/plan/resources';
import { withCurrentFigures } from '../currentFigures';
import type { PlanLayer } from '../planFile';

/** Kept, merged and dropped experts of one plan layer; an expert folded into a kept one by its merge row is merged, not dropped. */
export function layerPreview(layer: PlanLayer, numExperts: number): PlanLayerPreview {
  const mergedInto: Record<number, number[]> = {};
  const absorbed = new Set<number>(layer.keptExperts);
  layer.keptExperts.forEach((id, row) => {
    const merged = (layer.mergeMatrix?.[row] ?? []).flatMap((coefficient, j) => (coefficient !== 0 && j !== id ? [j] : []));
    if (merged.length > 0) mergedInto[id] = merged;
    merged.forEach((j) => absorbed.add(j));
  });
  return {
    layer: layer.layer,
    numExperts,
    kept: [...layer.keptExperts],
    mergedInto,
    dropped: Array.from({ length: numExperts }, (_, j) => j).filter((j) => !absorbed.has(j)),
    ...(layer.topK !== undefined ? { topK: layer.topK } : {}),
    ...(layer.adaptiveThreshold !== undefined ? { adaptiveThreshold: layer.adaptiveThreshold } : {}),
  };
}

/** `unsavedText`: the editor's text of the plan, so the preview follows edits before they are saved. */
export async function previewPlanFile(planFile: string, unsavedText?: string, workspaceFolders: readonly string[] = []): Promise<PreviewPlanResult> {
  const { plan: written, source, exportPlan } = await loadCheckedPlan(planFile, unsavedText, workspaceFolders);
  // Savings and exactness as the layers are now, not as recorded when the plan was written.
  const plan = withCurrentFigures(written, source.spec);
  try {
    // The model and calibration data as the server found them, so a sweep runs on the same files.
    const files = { modelFolder: source.folder, calibrationFiles: await Promise.all(plan.calibration.datasets.map((file) => resolvePlanPath(file, planFile, workspaceFolders))) };
    const layers = plan.layers.map((layer) => {
      const spec = source.spec.layers[layer.layer];
      return layerPreview(layer, spec?.kind === 'moe' ? spec.moe.numExperts : plan.model.numExperts);
    });
    try {
      const preview = previewExport(source, exportPlan);
      return { plan, layers, configBefore: preview.configBefore, configAfter: preview.configAfter, notExactReasons: preview.notExactReasons, ...files };
    } catch (error) {
      // A plan export refuses still previews: its config stays as it is, and the reason shows.
      const before = JSON.stringify(source.config, null, 2) + '\n';
      return { plan, layers, configBefore: before, configAfter: before, notExactReasons: [...plan.exactInHuggingFace.reasons, `export refuses this plan: ${errorMessage(error)}`], ...files };
    }
  } finally {
    await source.weights.close();
  }
}
