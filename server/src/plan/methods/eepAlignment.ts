/**
 * Neuron alignment for EEP's merge phase (our addition, the default; `neuronAlignment: false` merges
 * neuron k with neuron k as the paper does). UNCURL showed what averaging unaligned SwiGLU experts costs
 * (notes/uncurl-neuron-alignment.md: Mixtral demo arithmetic 3.79 unaligned, 1.96 aligned); EEP's
 * continuous W_EM rows average experts the same way, so merged experts are renumbered first, as UNCURL's
 * are (neuronAlignment.ts), through the same plan field `neuronOrder`.
 *
 * The rule. `neuronOrder` holds one permutation per original expert, but an EEP row may combine any
 * experts, so each expert gets one anchor:
 * - experts that label a row (`keptExperts[i]`, phase 1's survivors) are never renumbered: row i merges
 *   into its label's numbering, and a renumbered label would break the pairing of its own row;
 * - every other expert j is aligned to the kept expert whose router row is most like j's (cosine of the
 *   router weight rows; the lowest id on ties). That is where pruning sends j's tokens (a token's logit
 *   for a kept expert is largest where that expert's router row points the way j's does), so the row
 *   that gains most by taking in j, and that the search is most likely to grow j's coefficient in. In
 *   any other row j is averaged in its anchor's order, matched to nobody in particular, as every term
 *   was before. A kept expert that is a term of another kept expert's row is averaged unaligned there.
 * The order is attached wherever j is a term of a merged row (two or more non-zero coefficients).
 *
 * Why one anchor per expert, not the row where the candidate weighs j most: the orders are then the same
 * for every candidate (the matrices alone fix a candidate's function, as the search's cache assumes), and
 * a layer needs E − E′ assignments, as UNCURL's does, computed the first time a candidate needs them and
 * remembered (pairAlignment). Following each candidate's heaviest row instead would need up to
 * E′ × (E − E′) of them a layer, since the mutation puts small coefficients everywhere: on a 64-expert
 * layer keeping 8, 448 instead of 56, at seconds each for a real model's experts.
 */
import type { NeuronOrder } from '../../runtime/neuronOrder';
import type { PlanLayer } from '../planFile';
import { throwIfAborted } from '../statistics';
import { type AlignmentRecord, type AlignmentSource, alignmentRefusal, pairAlignment } from './neuronAlignment';

/** member → the kept expert whose router row (of `router`, [E, H] row-major) has the largest cosine with its own. */
export function routerAnchors(keptExperts: readonly number[], router: Float32Array, hidden: number): Map<number, number> {
  const E = router.length / hidden;
  const unit = Array.from({ length: E }, (_, j) => {
    const row = Float64Array.from(router.subarray(j * hidden, (j + 1) * hidden));
    const norm = Math.hypot(...row);
    return norm > 0 ? row.map((x) => x / norm) : row;
  });
  const kept = [...keptExperts].sort((a, b) => a - b);
  const anchors = new Map<number, number>();
  for (let j = 0; j < E; j++) {
    if (kept.includes(j)) continue;
    let best = kept[0];
    let bestCosine = -Infinity;
    for (const a of kept) {
      const cosine = unit[a].reduce((s, x, h) => s + x * unit[j][h], 0);
      if (cosine > bestCosine) [best, bestCosine] = [a, cosine];
    }
    anchors.set(j, best);
  }
  return anchors;
}

/** The experts a merged row (two or more non-zero coefficients) combines that no row is labelled with, ascending. */
export function mergedMembers(layer: Pick<PlanLayer, 'keptExperts' | 'mergeMatrix'>): number[] {
  const labels = new Set(layer.keptExperts);
  const members = new Set<number>();
  for (const row of layer.mergeMatrix ?? []) {
    if (row.filter((c) => c !== 0).length < 2) continue;
    row.forEach((c, j) => c !== 0 && !labels.has(j) && members.add(j));
  }
  return [...members].sort((a, b) => a - b);
}

/** Attaches each merged layer's `neuronOrder` to EEP's candidates; remembers the layers it had to skip and why. */
export class EepAlignment {
  private readonly align;
  private readonly skipped: Record<number, string> = {};
  /** Anchors per layer and kept set (the merge phase keeps phase 1's set, so this is computed once a layer). */
  private readonly anchors = new Map<string, Promise<Map<number, number>>>();

  constructor(private readonly source: AlignmentSource, private readonly signal?: AbortSignal) {
    this.align = pairAlignment(source);
  }

  /** The candidate with every merged layer's `neuronOrder` (replacing any it carried); prune-only layers as they are. */
  async attach(layers: PlanLayer[]): Promise<PlanLayer[]> {
    const attached: PlanLayer[] = [];
    for (const layer of layers) {
      if (!layer.mergeMatrix) {
        attached.push(layer);
        continue;
      }
      const { neuronOrder: _replaced, ...rest } = layer;
      const refusal = alignmentRefusal(this.source, layer.layer);
      if (refusal) {
        this.skipped[layer.layer] = refusal;
        attached.push(rest);
        continue;
      }
      const members = mergedMembers(layer);
      const anchors = members.length ? await this.anchorsOf(layer) : new Map<number, number>();
      const neuronOrder: NeuronOrder = {};
      for (const member of members) {
        throwIfAborted(this.signal);
        const order = await this.align(layer.layer, anchors.get(member)!, member);
        if (order.some((m, k) => m !== k)) neuronOrder[member] = order;
      }
      attached.push(Object.keys(neuronOrder).length ? { ...rest, neuronOrder } : rest);
    }
    return attached;
  }

  /** Layers merged without alignment, with the reason (as UNCURL records them). */
  record(): AlignmentRecord {
    return Object.keys(this.skipped).length ? { neuronAlignmentSkipped: { ...this.skipped } } : {};
  }

  private anchorsOf(layer: PlanLayer): Promise<Map<number, number>> {
    const key = `${layer.layer} ${[...layer.keptExperts].sort((a, b) => a - b).join(',')}`;
    let anchors = this.anchors.get(key);
    if (!anchors) {
      const { router } = this.source;
      if (!router) throw new Error('EEP\'s neuron alignment needs the router weights (the alignment source has none)');
      anchors = router.call(this.source, layer.layer).then((weights) => routerAnchors(layer.keptExperts, weights, this.source.hidden));
      anchors.catch(() => this.anchors.delete(key));
      this.anchors.set(key, anchors);
    }
    return anchors;
  }
}
