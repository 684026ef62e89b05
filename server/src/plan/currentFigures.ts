/**
 * A plan file records what it saves and whether Hugging Face can express it, as computed when it was
 * written. After a hand edit those records are stale; everything the editor shows (lens, preview)
 * computes them again from the layers as they are now, against the model's spec.
 */
import type { DType, ModelSpec } from '../checkpoint/modelSpec';
import { analyseHfExactness } from './hfExactness';
import type { MoePlan } from './planFile';
import { predictSavings } from './savings';

export function withCurrentFigures(plan: MoePlan, spec: ModelSpec): MoePlan {
  // The dtype is the checkpoint's, as recorded; parameter counts do not depend on it.
  const recorded = plan.predictedSavings?.dtype;
  const dtype: DType = recorded === 'F16' || recorded === 'BF16' ? recorded : 'F32';
  return { ...plan, predictedSavings: predictSavings(spec, plan.layers, dtype), exactInHuggingFace: analyseHfExactness(plan.layers, spec) };
}
