/**
 * The exported config.json: the source's, with the expert count and top-k updated and a `moe_studio`
 * block recording where the model came from.
 *
 * The `moe_studio` block (stock transformers ignores unknown keys):
 *   version                 1
 *   original_num_experts    E of the source model
 *   original_expert_ids     { "<layer>": [original id of new expert 0, 1, …] } for every MoE layer
 *   merged_layers           layers whose experts are weighted sums of originals (see plan.mergeMatrix)
 *   num_experts_per_layer   only when layers keep different counts: one entry per decoder layer, null
 *                           for dense layers. `num_experts`/`num_local_experts` then holds the largest
 *                           count, and stock loaders refuse the model (the router shapes do not match):
 *                           they need the same count in every layer. Our own loader reads it
 *                           (checkpoint/config.ts), so such an export can be profiled and evaluated here.
 *   plan, evaluation        the plan's record and evaluation, verbatim but for the layers' neuronOrder
 *                           (applied to the exported weights, and megabytes on a real model)
 */

import { findArchitecture } from '../checkpoint/config';
import type { ExportPlan, ResolvedExportPlan } from './exportPlan';

export const MOE_STUDIO_CONFIG_KEY = 'moe_studio';
export const MOE_STUDIO_CONFIG_VERSION = 1;

export function exportedConfig(sourceConfig: Record<string, unknown>, plan: ExportPlan, resolved: ResolvedExportPlan, numLayers: number): Record<string, unknown> {
  const numExpertsKey = findArchitecture(sourceConfig, 'config.json').config.numExperts;
  const config: Record<string, unknown> = { ...sourceConfig };
  const originalNumExperts = sourceConfig[numExpertsKey];
  config[numExpertsKey] = resolved.maxExperts;
  if (resolved.topK !== sourceConfig.num_experts_per_tok) config.num_experts_per_tok = resolved.topK;
  // GPT-OSS configs repeat top-k as `experts_per_token` (openai's own key): kept equal, so no reader sees the old one.
  if (typeof sourceConfig.experts_per_token === 'number' && resolved.topK !== sourceConfig.experts_per_token) config.experts_per_token = resolved.topK;

  const perLayer: (number | null)[] = new Array(numLayers).fill(null);
  for (const layer of resolved.layers) perLayer[layer.index] = layer.numExperts;
  config[MOE_STUDIO_CONFIG_KEY] = {
    version: MOE_STUDIO_CONFIG_VERSION,
    original_num_experts: originalNumExperts,
    original_expert_ids: Object.fromEntries(resolved.layers.map((layer) => [String(layer.index), layer.keptExperts])),
    merged_layers: resolved.layers.filter((layer) => layer.merged).map((layer) => layer.index),
    ...(!resolved.uniformExperts && { num_experts_per_layer: perLayer }),
    plan: plan.planRecord ?? null,
    evaluation: plan.evaluation ?? null,
  };
  return config;
}

/** As transformers writes it (two-space indent, trailing newline), so a diff shows only real changes. */
export function configText(config: Record<string, unknown>): string {
  return JSON.stringify(config, null, 2) + '\n';
}
