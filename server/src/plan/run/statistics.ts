/**
 * The plan methods' statistics from the profile stage: a saved profile adapted field by field, or the
 * calibration data profiled in memory (no profile file is written for a plan's own calibration).
 */
import { workSetTokens, type ModelRuntime } from '../../runtime';
import { Profiler } from '../../profile/profiler';
import type { LayerStatistics as ProfileLayerStatistics, ProfileFile } from '../../profile/types';
import type { LayerStatistics } from '../statistics';

/** Profile statistics → plan statistics (the methods' own minimal contract). */
export function toPlanStatistics(profile: Pick<ProfileFile, 'gatingThresholds' | 'layers'>): LayerStatistics[] {
  return profile.layers.map((layer: ProfileLayerStatistics) => ({
    layer: layer.layer,
    tokenCount: layer.tokenCounts,
    softCount: layer.softCounts,
    reapScore: layer.reap,
    routerLogitSimilarity: layer.logitCosine,
    ...(layer.logitCorrelation && { routerLogitCorrelation: layer.logitCorrelation }),
    gatingCurve: { threshold: profile.gatingThresholds, singleExpertShare: layer.singleExpertShare },
  }));
}

export interface CalibrationCapture {
  statistics: LayerStatistics[];
  /** Per MoE layer: the hidden states entering the block and the router logits, of the first `inputTokens` tokens. */
  layerInputs: Map<number, { inputs: Float32Array; routerLogits: Float32Array; tokens: number }>;
}

/**
 * One captured forward of the unchanged model over the calibration sequences: routing statistics of
 * every token, and (for NAEE) the MoE blocks' inputs of the first `inputTokens` tokens.
 */
export async function captureCalibration(runtime: ModelRuntime, sequences: Int32Array[], options: { inputTokens?: number; signal?: AbortSignal } = {}): Promise<CalibrationCapture> {
  const profiler = new Profiler({ tokenRecords: 0 });
  const inputTokens = options.inputTokens ?? 0;
  const hidden = runtime.model.hiddenSize;
  const parts = new Map<number, { inputs: Float32Array[]; logits: Float32Array[]; tokens: number }>();
  // Calls of one batch (about 2048 tokens) keep the captured arrays small; when layers stream, work sets
  // as large as the budget holds, so each layer loads once per work set.
  let start = 0;
  while (start < sequences.length) {
    const wantInputs = [...parts.values()].every((p) => p.tokens < inputTokens) && inputTokens > 0;
    const limit = workSetTokens(runtime.memory, runtime.model, { moe: true, moeInputs: wantInputs });
    let end = start;
    let tokens = 0;
    while (end < sequences.length && (end === start || tokens + sequences[end].length <= limit)) tokens += sequences[end++].length;
    const batch = sequences.slice(start, end);
    const result = await runtime.forward({ sequences: batch, outputs: { moe: true, moeInputs: wantInputs } }, { signal: options.signal });
    batch.forEach((tokenIds, i) => {
      const moe = result.sequences[i].moe ?? [];
      profiler.addSequence({ row: start + i, tokenIds, offsets: [] }, moe);
      for (const capture of moe) {
        if (!capture.inputs) continue;
        const part = parts.get(capture.layer) ?? { inputs: [], logits: [], tokens: 0 };
        parts.set(capture.layer, part);
        const take = Math.min(tokenIds.length, inputTokens - part.tokens);
        if (take <= 0) continue;
        part.inputs.push(capture.inputs.subarray(0, take * hidden));
        part.logits.push(capture.routerLogits.subarray(0, take * capture.numExperts));
        part.tokens += take;
      }
    });
    start = end;
  }
  const profile = profiler.finalize();
  const layerInputs = new Map([...parts].map(([layer, part]) => [layer, { inputs: concat(part.inputs), routerLogits: concat(part.logits), tokens: part.tokens }]));
  return { statistics: toPlanStatistics({ gatingThresholds: profile.gatingThresholds, layers: profile.layers }), layerInputs };
}

function concat(arrays: Float32Array[]): Float32Array {
  const result = new Float32Array(arrays.reduce((n, a) => n + a.length, 0));
  let offset = 0;
  for (const array of arrays) {
    result.set(array, offset);
    offset += array.length;
  }
  return result;
}
