/**
 * Checks a checkpoint's tensors against its spec before anything is computed: every tensor the
 * architecture needs is present, computable, and has the shape config.json implies. A model with a
 * wrong config fails here with names, rather than later with an out-of-bounds read.
 */

import { basename } from 'node:path';
import { CheckpointError, type CheckpointErrorCode } from './errors';
import { listExpectedTensors } from './expectedTensors';
import type { ModelSpec } from './modelSpec';
import type { CheckpointWeights } from './weightFiles';

/** Enough to see the pattern (a wrong size in config.json breaks hundreds of tensors alike). */
const PROBLEMS_SHOWN = 5;

interface Problem {
  code: CheckpointErrorCode;
  text: string;
}

/** What validation reads of a checkpoint's weights (CheckpointWeights, or its FP8 reader). */
type ValidatedWeights = Pick<CheckpointWeights, 'fileOf' | 'has' | 'info' | 'uncomputableTensors' | 'tensorCount'>;

export function validateWeights(spec: ModelSpec, weights: ValidatedWeights, folder: string): void {
  refuseImpossibleSize(spec, weights, folder);
  const problems: Problem[] = [];
  const stored = new Map(weights.uncomputableTensors().map((tensor) => [tensor.name, tensor]));
  for (const { name, shape, dtype: expectedDtype } of listExpectedTensors(spec)) {
    const file = weights.fileOf(name);
    if (file === undefined) {
      const hint = name === spec.tensors.lmHead ? ' (if the output layer shares the embeddings, config.json should say "tie_word_embeddings": true)' : mxfp4Hint(name);
      problems.push({ code: 'missingTensor', text: `missing tensor ${name}${hint}` });
      continue;
    }
    if (expectedDtype) {
      // MXFP4 blocks and scales: bytes, never decoded as numbers, so `has` (computable tensors) does not list them.
      const found = stored.get(name);
      if (!found || found.dtype !== expectedDtype) {
        problems.push({ code: 'unsupportedDtype', text: `${basename(file)}: ${name} is ${found?.dtype ?? weights.info(name).dtype}; expected ${expectedDtype} (MXFP4 ${name.endsWith('_scales') ? 'E8M0 scales' : 'E2M1 blocks'})` });
      } else if (found.shape.length !== shape.length || found.shape.some((dim, i) => dim !== shape[i])) {
        problems.push({ code: 'wrongShape', text: `${basename(file)}: ${name} has shape [${found.shape.join(', ')}], expected [${shape.join(', ')}] from config.json (MXFP4: blocks [E, out, in/32, 16], scales [E, out, in/32])` });
      }
      continue;
    }
    if (!weights.has(name)) {
      const dtype = weights.uncomputableTensors().find((tensor) => tensor.name === name)?.dtype;
      const fp8Hint = dtype === 'F8_E4M3' ? ' (an FP8 checkpoint needs "quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]} in config.json and a weight_scale_inv per weight)' : '';
      problems.push({ code: 'unsupportedDtype', text: `${basename(file)}: ${name} is ${dtype}; expected F32, F16 or BF16${fp8Hint}` });
      continue;
    }
    const info = weights.info(name);
    if (info.shape.length !== shape.length || info.shape.some((dim, i) => dim !== shape[i])) {
      problems.push({
        code: 'wrongShape',
        text: `${basename(file)}: ${name} has shape [${info.shape.join(', ')}], expected [${shape.join(', ')}] from config.json`,
      });
    }
  }
  if (problems.length === 0) return;
  const shown = problems.slice(0, PROBLEMS_SHOWN).map((problem) => `  - ${problem.text}`);
  const more = problems.length > PROBLEMS_SHOWN ? `\n  … and ${problems.length - PROBLEMS_SHOWN} more` : '';
  throw new CheckpointError(
    problems[0].code,
    `${folder} does not match its ${spec.architecture} config (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n${shown.join('\n')}${more}`,
    folder,
  );
}

/** A GPT-OSS weight missing in one encoding is often there in the other: say which the config asks for. */
function mxfp4Hint(name: string): string {
  if (/_(blocks|scales)$/.test(name)) return ' (config.json says quantization_config.quant_method "mxfp4"; a bf16 checkpoint has no quantization_config)';
  if (/\.mlp\.experts\.(gate_up|down)_proj$/.test(name)) return ' (an MXFP4 checkpoint stores it as _blocks and _scales and says so in quantization_config)';
  return '';
}

/**
 * A config can declare a million experts while the checkpoint holds a thousand tensors; listing
 * every expected tensor would then take gigabytes before saying so. Each layer has at least one
 * tensor of its own, and each expert stored separately three, so a config that asks for far more
 * than the checkpoint holds is refused by counting alone (the margin keeps the detailed list of
 * missing tensors for checkpoints that are only incomplete).
 */
function refuseImpossibleSize(spec: ModelSpec, weights: ValidatedWeights, folder: string): void {
  let declared = spec.layers.length;
  for (const layer of spec.layers) {
    if (layer.kind === 'moe' && spec.tensors.layer(layer.index).expert) declared += 3 * layer.moe.numExperts;
  }
  if (declared > 2 * weights.tensorCount + 1000) {
    throw new CheckpointError(
      'missingTensor',
      `${folder}: config.json declares ${spec.layers.length} layers (at least ${declared} tensors), but the checkpoint holds only ${weights.tensorCount} tensors.`,
      folder,
    );
  }
}
