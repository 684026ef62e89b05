import type { ResolvedExportPlan } from './exportPlan';

/**
 * What a DeepSeek V2/V3 (or Kimi-K2, Moonlight) model card adds: the kept experts' FP8 encoding, and how the
 * router's correction bias and group limit followed them.
 */
export function deepseekCardLines(sourceConfig: Record<string, unknown>, resolved: ResolvedExportPlan): string[] {
  const routing = resolved.layers.find((layer) => layer.moe.routing)?.moe.routing;
  if (!routing) return [];
  const quantization = sourceConfig.quantization_config as Record<string, unknown> | undefined;
  const lines: string[] = [];
  if (quantization?.quant_method === 'fp8') {
    lines.push(`- Experts stay FP8 (e4m3, ${JSON.stringify(quantization.weight_block_size)} block scales): each kept expert's weights and \`weight_scale_inv\` are copied byte for byte.`);
  }
  if (routing.correctionBias) lines.push('- Router: the kept experts keep their router rows and their `e_score_correction_bias` entries.');
  if (routing.groups && routing.groups.count > 1) {
    lines.push(`- Group-limited routing kept: ${routing.groups.count} groups (\`n_group\`), the best ${routing.groups.selected} per token (\`topk_group\`), each group keeping the same number of experts.`);
  }
  return lines;
}
