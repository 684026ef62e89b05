/**
 * Closed-form repairs applied to any method's plan after it has chosen (or merged) the kept experts:
 * the router refit first (it changes which experts tokens reach), then output compensation (fitted to
 * the routing the plan ends with). Both are exact in a Hugging Face export: the refit is a router map
 * (new router rows), the compensation a per-expert output scale (scaled down_proj).
 */
import type { PlanLayer } from '../planFile';
import { oneHotRows } from '../runtimeConversion';
import { throwIfAborted } from '../statistics';
import { type CompensationOptions, type CompensationSums, compensationScales } from './outputCompensation';
import { refitRouterRows, substitutes } from './routerRefit';

export const REPAIRS = ['routerRefit', 'outputCompensation'] as const;
export type Repair = (typeof REPAIRS)[number];

/** What the repairs read from the calibration (the plan/run LayerReconstruction provides it). */
export interface RepairSource {
  routerLogits(layer: number): { logits: ArrayLike<number>; tokens: number; numExperts: number };
  /** How far a kept expert's output is from a removed one's on the tokens the removed one served. */
  outputDistance(layer: number, removed: number, kept: number): number;
  compensationSums(plan: PlanLayer): Promise<CompensationSums>;
  /** Computes what the sync reads of `layer` need (the layer's expert outputs), before they are made. */
  prepare?(layer: number): Promise<void>;
}

export interface RepairRecord {
  repairs: Repair[];
  /** Output compensation: per layer, whether it fitted one factor per expert or one per layer. */
  compensation?: Record<number, 'expert' | 'layer'>;
}

export async function applyRepairs(layers: PlanLayer[], repairs: readonly Repair[], source: RepairSource, options: CompensationOptions & { signal?: AbortSignal } = {}): Promise<{ layers: PlanLayer[]; record: RepairRecord }> {
  const ordered = REPAIRS.filter((r) => repairs.includes(r));
  const record: RepairRecord = { repairs: ordered };
  let result = layers;
  if (ordered.includes('routerRefit')) {
    const refitted: PlanLayer[] = [];
    for (const layer of result) {
      throwIfAborted(options.signal);
      await source.prepare?.(layer.layer);
      const { logits, tokens, numExperts } = source.routerLogits(layer.layer);
      const mergeRows = layer.mergeMatrix ?? oneHotRows(layer.keptExperts, numExperts);
      const groups = substitutes(numExperts, mergeRows, (removed, row) => source.outputDistance(layer.layer, removed, layer.keptExperts[row]));
      const current = layer.routerMap ?? oneHotRows(layer.keptExperts, numExperts);
      refitted.push({ ...layer, routerMap: refitRouterRows({ logits, tokens, numExperts, groups, current }), mergeMatrix: mergeRows });
    }
    result = refitted;
  }
  if (ordered.includes('outputCompensation')) {
    const compensation: Record<number, 'expert' | 'layer'> = {};
    const compensated: PlanLayer[] = [];
    for (const layer of result) {
      throwIfAborted(options.signal);
      const { scales, granularity } = compensationScales(await source.compensationSums(layer), options);
      compensation[layer.layer] = granularity;
      compensated.push({ ...layer, outputScale: scales });
    }
    result = compensated;
    record.compensation = compensation;
  }
  return { layers: result, record };
}
