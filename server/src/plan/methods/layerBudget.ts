/**
 * A global expert budget ("keep 50% of all experts") shared out across layers by each layer's measured
 * marginal loss, beside the uniform count every layer gets by default.
 *
 * Each layer comes with its cost curve: the calibration loss with only that layer pruned to k experts
 * (k from its minimum, the model's top-k, to all of them). Starting from every expert kept, the
 * allocation repeatedly removes one expert from the layer where that costs least (the next step down
 * its curve), until the total is the budget; ties go to the later layer list entry's lower index first.
 * Costs are taken as additive across layers, the usual first-order assumption; on a curve that is not
 * convex the greedy step can stop above a cheaper drop two steps further down, so each curve is made
 * non-increasing in k first (keeping more experts never costs more than keeping fewer would).
 */

export interface LayerCostCurve {
  layer: number;
  numExperts: number;
  /** Fewest experts this layer may keep. */
  minimum: number;
  /** cost[k] = calibration loss with this layer alone keeping k experts, for k = minimum..numExperts. */
  cost: number[];
}

export function allocateExperts(curves: LayerCostCurve[], total: number): Record<number, number> {
  const kept = curves.map((c) => c.numExperts);
  const lowest = curves.reduce((s, c) => s + c.minimum, 0);
  const highest = kept.reduce((a, b) => a + b, 0);
  if (!Number.isInteger(total) || total < lowest || total > highest) throw new Error(`an expert budget of ${total} is not in ${lowest}..${highest} for these layers`);
  const monotone = curves.map((c) => {
    const cost = c.cost.slice();
    for (let k = c.numExperts - 1; k >= c.minimum; k--) cost[k] = Math.max(cost[k], cost[k + 1]);
    return cost;
  });
  let count = highest;
  while (count > total) {
    let best = -1;
    let bestStep = Infinity;
    curves.forEach((c, i) => {
      if (kept[i] <= c.minimum) return;
      const step = monotone[i][kept[i] - 1] - monotone[i][kept[i]];
      if (step < bestStep) {
        best = i;
        bestStep = step;
      }
    });
    kept[best]--;
    count--;
  }
  return Object.fromEntries(curves.map((c, i) => [c.layer, kept[i]]));
}
