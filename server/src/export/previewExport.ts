/** What an export would do, without reading a weight or writing a byte: for the preview view and VS Code's diff editor. */

import { configText, exportedConfig } from './exportConfig';
import { buildExportLayout, type ExportSource, type TensorAction } from './exportLayout';
import { resolveExportPlan, type ExportPlan } from './exportPlan';

export interface PreviewTensor {
  /** The exported name; for `removed`, the source name. */
  name: string;
  action: TensorAction | 'removed';
  /** Source tensors it is made from (for `renamed`: the original name). */
  sources: string[];
  dtype: string;
  shape: number[];
  bytes: number;
}

export interface ExportPreview {
  tensors: PreviewTensor[];
  /** How many tensors of each action. */
  counts: Record<PreviewTensor['action'], number>;
  bytesBefore: number;
  bytesAfter: number;
  bytesSaved: number;
  /** config.json as the source has it and as the export will write it, both serialised alike so the diff shows only changes. */
  configBefore: string;
  configAfter: string;
  /** Non-empty when export would refuse the plan: why a stock loader would compute something else. */
  notExactReasons: string[];
  /** Layers keep different expert counts: stock loaders cannot open the export. */
  nonUniformExperts: boolean;
}

export function previewExport(source: ExportSource, plan: ExportPlan): ExportPreview {
  const resolved = resolveExportPlan(source.spec, plan);
  const layout = buildExportLayout(source, resolved);
  const tensors: PreviewTensor[] = [
    ...layout.tensors.map(({ name, action, sources, dtype, shape, byteLength }) => ({ name, action, sources, dtype, shape, bytes: byteLength })),
    ...layout.removed.map(({ name, dtype, shape, byteLength }) => ({ name, action: 'removed' as const, sources: [name], dtype, shape, bytes: byteLength })),
  ];
  const counts = { kept: 0, renamed: 0, merged: 0, sliced: 0, mapped: 0, removed: 0 };
  for (const tensor of tensors) counts[tensor.action]++;
  const bytesBefore = layout.sourceTensors.reduce((sum, tensor) => sum + tensor.byteLength, 0);
  const bytesAfter = layout.tensors.reduce((sum, tensor) => sum + tensor.byteLength, 0);
  return {
    tensors,
    counts,
    bytesBefore,
    bytesAfter,
    bytesSaved: bytesBefore - bytesAfter,
    configBefore: configText(source.config),
    configAfter: configText(exportedConfig(source.config, plan, resolved, source.spec.layers.length)),
    notExactReasons: resolved.notExactReasons,
    nonUniformExperts: !resolved.uniformExperts,
  };
}
