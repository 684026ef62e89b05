/**
 * Router refit: after pruning (or merging), refit each kept router row by least squares so that the
 * pruned router reproduces the full model's routing on the calibration tokens. Closed form, no gradients;
 * the result is a router map W_RM (each new router row a linear combination of the original ones), so
 * the runtime runs it and a Hugging Face export writes it as plain router rows.
 *
 * What "reproduce the routing" means: every removed expert is represented by one kept expert (the kept
 * expert it is merged into, else the one whose output is closest to its own on the tokens it served,
 * `substitutes`), and kept expert i should take the probability the full model gave its whole group G_i.
 * The full model's softmax, summed over a group, is a softmax over the groups' log-sum-exp logits
 * z_i = log Σ_{j ∈ G_i} exp(l_j) (the denominators agree since the groups cover every expert), so the
 * pruned router is exact when its logit for i equals z_i. Each new row w_i minimises
 * Σ_t (w_i · l(t) − z_i(t))² + λ ‖w_i − w_i⁰‖² over the original logits l(t) (E features, so the solve
 * is E × E however wide the model), where w_i⁰ is the row before the refit (one-hot for pruning) and
 * λ a small ridge relative to the mean diagonal of Σ_t l(t) l(t)ᵀ.
 *
 * Without removed experts every group is the expert alone, z_i = l_i, and the refit returns the rows
 * unchanged. It cannot add a constant to a logit (routers have no bias), so a group's extra mass is
 * reproduced only as far as it is a linear function of the logits.
 */
import { solveSymmetric } from './outputCompensation';

export const DEFAULT_ROUTER_RIDGE = 1e-4;

export interface RouterRefitInput {
  /** Original router logits, [tokens × E] row-major. */
  logits: ArrayLike<number>;
  tokens: number;
  numExperts: number;
  /** Per kept row: the original experts whose probability it should take (its own id included). */
  groups: number[][];
  /** The rows before the refit (E' × E), the ridge's anchor. */
  current: number[][];
  ridge?: number;
}

export function refitRouterRows(input: RouterRefitInput): number[][] {
  const { logits, tokens, numExperts: E, groups } = input;
  const gram = Array.from({ length: E }, () => new Float64Array(E));
  for (let t = 0; t < tokens; t++) {
    const row = t * E;
    for (let a = 0; a < E; a++) {
      const la = logits[row + a];
      for (let b = a; b < E; b++) gram[a][b] += la * logits[row + b];
    }
  }
  let trace = 0;
  for (let a = 0; a < E; a++) trace += gram[a][a];
  const lambda = (input.ridge ?? DEFAULT_ROUTER_RIDGE) * (trace > 0 ? trace / E : 1);
  return groups.map((group, i) => {
    // A row no expert's probability belongs to (two rows merging the same experts) has no target: it keeps its row.
    if (group.length === 0) return input.current[i].slice();
    const rhs = new Float64Array(E);
    for (let t = 0; t < tokens; t++) {
      const row = t * E;
      let max = -Infinity;
      for (const j of group) max = Math.max(max, logits[row + j]);
      let sum = 0;
      for (const j of group) sum += Math.exp(logits[row + j] - max);
      const target = max + Math.log(sum);
      for (let a = 0; a < E; a++) rhs[a] += logits[row + a] * target;
    }
    const a = Array.from({ length: E }, (_, p) => Array.from({ length: E }, (_, q) => (p <= q ? gram[p][q] : gram[q][p]) + (p === q ? lambda : 0)));
    const b = Array.from({ length: E }, (_, p) => rhs[p] + lambda * input.current[i][p]);
    return solveSymmetric(a, b);
  });
}

/**
 * The kept row each removed expert is represented by: the row whose merge gives it the largest positive
 * coefficient (ties to the lower row), else the kept row whose output is closest to the removed expert's
 * (`distance(removed, row)`, smallest wins, ties to the lower row). Returns one group per kept row, its
 * members ascending.
 *
 * The largest coefficient, not the first row that names the expert: EEP's merge phase leaves small
 * coefficients, negative ones too, of a kept expert in other rows (measured on the OLMoE demo: −0.012 of
 * expert 2 in the row before expert 2's own), and giving the expert to that row left its own row an empty
 * group, whose target log-sum-exp is −∞ and whose refit was NaN.
 */
export function substitutes(numExperts: number, mergeRows: number[][], distance: (removed: number, row: number) => number): number[][] {
  const groups = mergeRows.map(() => new Set<number>());
  const owner = new Array<number>(numExperts).fill(-1);
  const weight = new Array<number>(numExperts).fill(0);
  mergeRows.forEach((row, i) => row.forEach((coefficient, j) => {
    if (coefficient > weight[j]) {
      owner[j] = i;
      weight[j] = coefficient;
    }
  }));
  for (let j = 0; j < numExperts; j++) {
    if (owner[j] < 0) {
      let best = 0;
      let bestDistance = Infinity;
      for (let i = 0; i < mergeRows.length; i++) {
        const d = distance(j, i);
        if (d < bestDistance) {
          best = i;
          bestDistance = d;
        }
      }
      owner[j] = best;
    }
    groups[owner[j]].add(j);
  }
  return groups.map((group) => [...group].sort((a, b) => a - b));
}
