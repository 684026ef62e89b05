/**
 * A warning on each merge row that averages experts the plan's profile says the calibration data relies
 * on (`heavyMerges`): the same check plan generation reports, kept visible in the file while it is
 * edited. Needs the profile the plan names; without one there is nothing to check against.
 */
import { findNodeAtLocation } from 'jsonc-parser';
import { describeHeavyMerge, heavyMerges } from '../../plan';
import type { EditorProblem, PlanAnalysis } from './analysis';
import type { HoverProfile } from './hover';
import { profileStatsForHover } from './profileStats';

export function heavyMergeProblems(analysis: PlanAnalysis, profile: HoverProfile | undefined): EditorProblem[] {
  const layers = analysis.parsed.plan?.layers;
  if (!profile || !layers || !analysis.tree) return [];
  const shares = (layer: number, numExperts: number) => {
    const found = Array.from({ length: numExperts }, (_, id) => profileStatsForHover(profile.json, layer, id)?.tokenShare);
    return found.some((share) => share !== undefined) ? found.map((share) => share ?? 0) : undefined;
  };
  return heavyMerges(layers, (layer) => {
    const width = layers.find((l) => l.layer === layer)?.mergeMatrix?.[0]?.length;
    return width ? shares(layer, width) : undefined;
  }).flatMap((merge) => {
    const index = layers.findIndex((l) => l.layer === merge.layer);
    const node = findNodeAtLocation(analysis.tree!, ['layers', index, 'mergeMatrix', merge.row]);
    if (!node) return [];
    return [{ severity: 'warning' as const, code: 'heavyMerge' as const, message: describeHeavyMerge(merge, profile.label), range: { offset: node.offset, length: node.length } }];
  });
}
