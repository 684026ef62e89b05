/**
 * The arithmetic of the quality metrics, over plain arrays: pure, so tests can check it against an
 * independent computation. Sums run in float64; logits stay float32 as the runtime returns them.
 */

/** log Σ exp(row) with the max subtracted first. */
export function logSumExp(row: Float32Array, offset: number, length: number): number {
  let max = -Infinity;
  for (let i = 0; i < length; i++) if (row[offset + i] > max) max = row[offset + i];
  if (max === -Infinity) return -Infinity;
  let sum = 0;
  for (let i = 0; i < length; i++) sum += Math.exp(row[offset + i] - max);
  return max + Math.log(sum);
}

/** KL(p ‖ q) in nats for the distributions softmax(p) and softmax(q) of two logit rows. */
export function klDivergence(p: Float32Array, q: Float32Array, offset: number, length: number): number {
  const lseP = logSumExp(p, offset, length);
  const lseQ = logSumExp(q, offset, length);
  let kl = 0;
  for (let i = 0; i < length; i++) {
    const logP = p[offset + i] - lseP;
    const probability = Math.exp(logP);
    if (probability > 0) kl += probability * (logP - (q[offset + i] - lseQ));
  }
  // Rounding can leave a tiny negative sum for identical rows; KL is never negative.
  return Math.max(0, kl);
}

/** Index of the largest entry; ties go to the lowest index (as the runtime's TopK does). */
export function argmax(row: Float32Array, offset: number, length: number): number {
  let best = 0;
  for (let i = 1; i < length; i++) if (row[offset + i] > row[offset + best]) best = i;
  return best;
}

/**
 * Log-likelihood of a choice's tokens given the prompt, from the runtime's per-token loss
 * (loss[t] = -log p(ids[t + 1] | ids[..t])): Σ over choice positions k ≥ start of -loss[k - 1].
 */
export function choiceLogLikelihood(loss: Float32Array, start: number): number {
  let sum = 0;
  for (let k = Math.max(start, 1); k <= loss.length; k++) sum -= loss[k - 1];
  return sum;
}

export function mean(values: Float32Array[]): { mean: number; count: number } {
  let sum = 0;
  let count = 0;
  for (const array of values) {
    for (const value of array) sum += value;
    count += array.length;
  }
  return { mean: count > 0 ? sum / count : NaN, count };
}
