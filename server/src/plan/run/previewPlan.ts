/** What a plan does, layer by layer, and the config.json it would export: for the preview view and the diff editor. */
import type { PlanLayerPreview, PreviewPlanResult } from '../../../../common/protocol';
import { loadCheckedPlan } from '../../evaluate/evaluatePlan';
import { previewExport } from '../../export';
import { errorMessage } from '../../errors';
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

export async function previewPlanFile(planFile: string): Promise<PreviewPlanResult> {
  const { plan, source, exportPlan } = await loadCheckedPlan(planFile);
  try {
    const layers = plan.layers.map((layer) => {
      const spec = source.spec.layers[layer.layer];
      return layerPreview(layer, spec?.kind === 'moe' ? spec.moe.numExperts : plan.model.numExperts);
    });
    try {
      const preview = previewExport(source, exportPlan);
      return { plan, layers, configBefore: preview.configBefore, configAfter: preview.configAfter, notExactReasons: preview.notExactReasons };
    } catch (error) {
      // A plan export refuses still previews: its config stays as it is, and the reason shows.
      const before = JSON.stringify(source.config, null, 2) + '\n';
      return { plan, layers, configBefore: before, configAfter: before, notExactReasons: [...plan.exactInHuggingFace.reasons, `export refuses this plan: ${errorMessage(error)}`] };
    }
  } finally {
    await source.weights.close();
  }
}
