/**
 * Two profiles of the same model side by side: which experts one dataset uses more than another,
 * and how different the two usage distributions are per layer.
 */
import type { LayerStatistics, ProfileComparison } from './types';

interface ComparedProfile {
  layers: readonly LayerStatistics[];
}

/** "`profile` minus `other`", layer by layer (layers are matched by index). */
export function compareProfiles(profile: ComparedProfile, other: ComparedProfile, label = 'this', otherLabel = 'other'): ProfileComparison {
  const others = new Map(other.layers.map((layer) => [layer.layer, layer]));
  const comparison: ProfileComparison = { label, otherLabel, layers: [], skipped: [] };
  for (const layer of profile.layers) {
    const theirs = others.get(layer.layer);
    others.delete(layer.layer);
    if (!theirs) {
      comparison.skipped.push({ layer: layer.layer, reason: `not in ${otherLabel}` });
    } else if (theirs.numExperts !== layer.numExperts) {
      comparison.skipped.push({ layer: layer.layer, reason: `${layer.numExperts} experts in ${label}, ${theirs.numExperts} in ${otherLabel}` });
    } else {
      comparison.layers.push({
        layer: layer.layer,
        numExperts: layer.numExperts,
        shareDifference: layer.usageShare.map((share, e) => share - theirs.usageShare[e]),
        jensenShannon: jensenShannon(layer.usageShare, theirs.usageShare),
      });
    }
  }
  for (const layer of others.keys()) comparison.skipped.push({ layer, reason: `not in ${label}` });
  comparison.skipped.sort((a, b) => a.layer - b.layer);
  return comparison;
}

/**
 * Jensen–Shannon divergence in bits (log base 2), so it lies in [0, 1]: 0 for identical
 * distributions, 1 for disjoint ones. Inputs are normalised first; two all-zero inputs give 0.
 */
export function jensenShannon(p: readonly number[], q: readonly number[]): number {
  if (p.length !== q.length) throw new Error(`distributions of different lengths (${p.length}, ${q.length})`);
  const sumP = p.reduce((sum, value) => sum + value, 0);
  const sumQ = q.reduce((sum, value) => sum + value, 0);
  if (sumP <= 0 || sumQ <= 0) return sumP <= 0 && sumQ <= 0 ? 0 : 1;
  let divergence = 0;
  for (let i = 0; i < p.length; i++) {
    const a = p[i] / sumP;
    const b = q[i] / sumQ;
    const mean = (a + b) / 2;
    if (a > 0) divergence += 0.5 * a * Math.log2(a / mean);
    if (b > 0) divergence += 0.5 * b * Math.log2(b / mean);
  }
  return Math.min(1, Math.max(0, divergence));
}
