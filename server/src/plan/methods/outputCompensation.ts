/**
 * Output compensation: after the kept experts are chosen, scale each kept expert's output (its down
 * projection) by the factor that best reconstructs the full layer's output on the calibration tokens,
 * in the least-squares sense. Closed form, no gradients, and exact in a stock checkpoint (the exported
 * down_proj is scaled).
 *
 * Why it helps: in the non-renormalised families (Qwen-MoE, OLMoE: `norm_topk_prob` false) the softmax
 * runs over fewer experts after pruning, so every kept expert's gate weight grows by what was removed,
 * and a layer's output is systematically too large; with renormalised top-k (Mixtral) a token that lost
 * one of its experts puts the whole weight on the other. Either way the pruned layer's output is
 * mis-scaled per expert, which one factor per expert can undo on average.
 *
 * With c_i(t) the pruned layer's routed contribution of kept expert i to token t (its gate weight times
 * its output, 0 when t does not route to it) and y(t) the full layer's routed output, the factors s
 * minimise Σ_t ‖Σ_i s_i c_i(t) − y(t)‖², i.e. solve G s = r with G_ij = Σ_t ⟨c_i(t), c_j(t)⟩ and
 * r_i = Σ_t ⟨c_i(t), y(t)⟩. Per layer (one s for all kept experts) it is s = Σ r / Σ G. A kept expert that
 * few calibration tokens reach would get a factor fitted to noise, so "auto" falls back to the per-layer
 * factor unless every kept expert saw at least `minTokens` tokens. A small ridge pulls every factor
 * towards 1, so an expert no token reaches keeps its output unchanged.
 */

export const COMPENSATION_GRANULARITIES = ['auto', 'expert', 'layer'] as const;
export type CompensationGranularity = (typeof COMPENSATION_GRANULARITIES)[number];

/** What the least squares needs, accumulated over calibration tokens (never the tokens themselves). */
export interface CompensationSums {
  /** n × n row-major: Σ_t ⟨c_i(t), c_j(t)⟩. */
  gram: Float64Array;
  /** Σ_t ⟨c_i(t), y(t)⟩. */
  cross: Float64Array;
  /** Calibration tokens routed to each kept expert. */
  routedTokens: number[];
}

export const DEFAULT_COMPENSATION = { granularity: 'auto', minTokens: 32, ridge: 1e-6 } as const;

export interface CompensationOptions {
  granularity?: CompensationGranularity;
  /** "auto": per expert only when every kept expert saw at least this many tokens. */
  minTokens?: number;
  /** Ridge towards 1, relative to the mean diagonal of the Gram matrix. */
  ridge?: number;
}

export function compensationScales(sums: CompensationSums, options: CompensationOptions = {}): { scales: number[]; granularity: 'expert' | 'layer' } {
  const n = sums.cross.length;
  const minTokens = options.minTokens ?? DEFAULT_COMPENSATION.minTokens;
  const requested = options.granularity ?? DEFAULT_COMPENSATION.granularity;
  const granularity = requested === 'auto' ? (sums.routedTokens.every((count) => count >= minTokens) ? 'expert' : 'layer') : requested;
  let trace = 0;
  for (let i = 0; i < n; i++) trace += sums.gram[i * n + i];
  const lambda = (options.ridge ?? DEFAULT_COMPENSATION.ridge) * (trace > 0 ? trace / n : 1);
  if (granularity === 'layer') {
    let gramTotal = 0;
    let crossTotal = 0;
    for (let i = 0; i < n * n; i++) gramTotal += sums.gram[i];
    for (let i = 0; i < n; i++) crossTotal += sums.cross[i];
    const scale = (crossTotal + lambda) / (gramTotal + lambda);
    return { scales: new Array<number>(n).fill(scale), granularity };
  }
  const a = Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => sums.gram[i * n + j] + (i === j ? lambda : 0)));
  const b = Array.from({ length: n }, (_, i) => sums.cross[i] + lambda);
  return { scales: solveSymmetric(a, b), granularity };
}

/**
 * Solves A x = b for a symmetric positive definite A (Cholesky); `a` and `b` are overwritten. Sizes are
 * a layer's kept experts (compensation) or its experts (router refit), at most a few hundred, so the
 * textbook O(n³) factorisation is cheap and needs no library.
 */
export function solveSymmetric(a: number[][], b: number[]): number[] {
  const n = b.length;
  for (let j = 0; j < n; j++) {
    let d = a[j][j];
    for (let k = 0; k < j; k++) d -= a[j][k] * a[j][k];
    if (!(d > 0)) throw new Error('least squares: the normal equations are not positive definite');
    const root = Math.sqrt(d);
    a[j][j] = root;
    for (let i = j + 1; i < n; i++) {
      let s = a[i][j];
      for (let k = 0; k < j; k++) s -= a[i][k] * a[j][k];
      a[i][j] = s / root;
    }
  }
  const y = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    let s = b[i];
    for (let k = 0; k < i; k++) s -= a[i][k] * y[k];
    y[i] = s / a[i][i];
  }
  const x = new Array<number>(n);
  for (let i = n - 1; i >= 0; i--) {
    let s = y[i];
    for (let k = i + 1; k < n; k++) s -= a[k][i] * x[k];
    x[i] = s / a[i][i];
  }
  return x;
}
