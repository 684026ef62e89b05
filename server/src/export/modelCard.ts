/** The exported folder's README.md: what was pruned or merged, on what data, and quality before and after. */

import { deepseekCardLines } from './deepseekCard';
import { basename, dirname, resolve } from 'node:path';
import { formatBytes, isLargeQualityDrop, metricLabel } from '../../../common/format';
import type { ExportPlan, ResolvedExportPlan } from './exportPlan';

interface Metric {
  name: string;
  /** The metric's id (`kl`, `top1Agreement`, …) when the plan recorded one; `name` may add the dataset. */
  metric?: string;
  dataset?: string;
  before?: number;
  after?: number;
}

function metricsOf(evaluation: unknown): { dataset?: string; metrics: Metric[] } | undefined {
  if (typeof evaluation !== 'object' || evaluation === null) return undefined;
  const { dataset, metrics } = evaluation as { dataset?: unknown; metrics?: unknown };
  if (!Array.isArray(metrics) || !metrics.every((m) => typeof m === 'object' && m !== null && typeof (m as Metric).name === 'string')) return undefined;
  return { dataset: typeof dataset === 'string' ? dataset : undefined, metrics: metrics as Metric[] };
}

const number = (value: unknown) => (typeof value === 'number' ? String(Number(value.toPrecision(6))) : '–');

/** Folder names that say nothing about the model: the card names the folder above as well. */
const GENERIC_FOLDER_NAMES = new Set(['model', 'models', 'checkpoint', 'checkpoints', 'weights', 'hf', 'huggingface', 'original', '.']);

/** config.json's `_name_or_path` (the hub id transformers records), else the folder's name, with its parent's when it is a generic one. */
export function modelName(sourceFolder: string, sourceConfig: Record<string, unknown>): string {
  const recorded = sourceConfig._name_or_path;
  if (typeof recorded === 'string' && recorded.trim() && !GENERIC_FOLDER_NAMES.has(basename(recorded))) return recorded.trim();
  const folder = resolve(sourceFolder);
  const name = basename(folder);
  const parent = basename(dirname(folder));
  return GENERIC_FOLDER_NAMES.has(name) && parent ? `${parent}/${name}` : name;
}

export function modelCard(options: {
  sourceFolder: string;
  sourceConfig: Record<string, unknown>;
  plan: ExportPlan;
  resolved: ResolvedExportPlan;
  bytesBefore: number;
  bytesAfter: number;
}): string {
  const { plan, resolved, sourceConfig } = options;
  const sourceName = modelName(options.sourceFolder, sourceConfig);
  const architecture = Array.isArray(sourceConfig.architectures) ? String(sourceConfig.architectures[0]) : String(sourceConfig.model_type);
  const changed = resolved.layers.filter((layer) => layer.planned);
  const lines = [
    '---',
    'library_name: transformers',
    'tags:',
    '  - moe-studio',
    '  - mixture-of-experts',
    `  - ${changed.some((layer) => layer.merged) ? 'expert-merging' : 'expert-pruning'}`,
    '---',
    '',
    `# ${sourceName}, compressed with MoE Studio`,
    '',
    `This is \`${sourceName}\` (${architecture}) with experts ${changed.some((l) => l.merged) ? 'pruned and merged' : 'pruned'} by MoE Studio` +
      `${plan.method ? ` (${plan.method})` : ''}. Weights: ${formatBytes(options.bytesAfter)}, down from ${formatBytes(options.bytesBefore)}.`,
    '',
    '## What changed',
    '',
    `- Calibration data: ${plan.calibrationData ?? metricsOf(plan.evaluation)?.dataset ?? 'not recorded'}.`,
    `- Experts per token: ${resolved.topK}${resolved.topK !== sourceConfig.num_experts_per_tok ? ` (was ${String(sourceConfig.num_experts_per_tok)})` : ''}.`,
    '- Every tensor not listed below is a bit-for-bit copy of the original.',
    ...deepseekCardLines(sourceConfig, resolved),
    ...(isMxfp4(sourceConfig)
      ? [`- The experts stay in MXFP4 (\`quantization_config\` unchanged): a kept expert's blocks, scales and biases are byte-for-byte copies${changed.some((l) => l.merged || l.outputScale) ? '; a merged or rescaled one is re-encoded to MXFP4, and the quality below was measured on the re-encoded weights' : ''}.`]
      : []),
    '',
    ...(changed.length === 0
      ? ['No layer was changed.']
      : [
          '| layer | experts | original ids of the new experts | merged |',
          '|---|---|---|---|',
          ...changed.map((layer) => `| ${layer.index} | ${layer.moe.numExperts} → ${layer.numExperts} | ${layer.keptExperts.join(', ')} | ${layer.merged ? 'yes' : 'no'} |`),
        ]),
    '',
  ];

  lines.push('## Quality', '');
  const evaluation = metricsOf(plan.evaluation);
  if (evaluation) {
    if (evaluation.dataset) lines.push(`Evaluated on ${evaluation.dataset}.`, '');
    const label = (m: Metric) => (m.metric ? `${metricLabel(m.metric)}${m.name !== m.metric && m.dataset ? ` (${m.dataset})` : ''}` : m.name);
    const drops = evaluation.metrics.filter((m) => m.metric && typeof m.after === 'number' && isLargeQualityDrop(m.metric, m.after, m.before));
    if (drops.length > 0) {
      lines.push(`> **Warning: quality dropped sharply.** ${drops.map((m) => `${label(m)}: ${number(m.before)} → ${number(m.after)}`).join('; ')}. Check that this model still does its task before using it.`, '');
    }
    lines.push(
      '| metric | original | exported |',
      '|---|---|---|',
      ...evaluation.metrics.map((m) => {
        const cells = [label(m), number(m.before), number(m.after)];
        return `| ${(drops.includes(m) ? cells.map((cell) => `**${cell}**`) : cells).join(' | ')} |`;
      }),
      '',
    );
  } else if (plan.evaluation !== undefined && plan.evaluation !== null) {
    lines.push('```json', JSON.stringify(plan.evaluation, null, 2), '```', '');
  } else {
    lines.push('No evaluation was recorded.', '');
  }

  lines.push('## Loading', '');
  if (resolved.uniformExperts) {
    lines.push('Every MoE layer has the same number of experts, so the stock `transformers` loader opens this folder as usual (`AutoModelForCausalLM.from_pretrained`).', '');
  } else {
    lines.push(
      '**Layers keep different numbers of experts. Stock `transformers` loaders need the same count in every layer and will refuse this model** ' +
        '(router weight shapes do not match the config). The per-layer counts are in `config.json` under `moe_studio.num_experts_per_layer`; ' +
        'the expert count key holds the largest of them. MoE Studio reads them, so it can profile, evaluate and export this model further.',
      '',
    );
  }
  lines.push(
    '## Provenance',
    '',
    '`config.json` has a `moe_studio` block: the original expert ids of every new expert, the layers whose experts were merged, the plan and its evaluation. ' +
      '`moe_studio_manifest.json` lists the SHA-256 of every file in this folder.',
    '',
  );
  return lines.join('\n');
}

/** GPT-OSS as published: experts as MXFP4 blocks and scales. */
function isMxfp4(config: Record<string, unknown>): boolean {
  const quantization = config.quantization_config;
  return typeof quantization === 'object' && quantization !== null && (quantization as Record<string, unknown>).quant_method === 'mxfp4';
}
