/** The float64 reference's building blocks, shared by referenceForward.ts, referenceDeepseek.ts and the tests of expert outputs. */

export type Matrix = { data: Float64Array; rows: number; cols: number };

/** y = x W^T with W in HF layout [out, in]. */
export function linear(x: Matrix, weight: ArrayLike<number>, out: number): Matrix {
  const y = new Float64Array(x.rows * out);
  for (let r = 0; r < x.rows; r++) {
    for (let o = 0; o < out; o++) {
      let sum = 0;
      for (let i = 0; i < x.cols; i++) sum += x.data[r * x.cols + i] * weight[o * x.cols + i];
      y[r * out + o] = sum;
    }
  }
  return { data: y, rows: x.rows, cols: out };
}

export function rmsNorm(x: Matrix, weight: ArrayLike<number>, eps: number): Matrix {
  const y = new Float64Array(x.data.length);
  for (let r = 0; r < x.rows; r++) {
    let sumSquares = 0;
    for (let c = 0; c < x.cols; c++) sumSquares += x.data[r * x.cols + c] ** 2;
    const scale = 1 / Math.sqrt(sumSquares / x.cols + eps);
    for (let c = 0; c < x.cols; c++) y[r * x.cols + c] = x.data[r * x.cols + c] * scale * weight[c];
  }
  return { data: y, rows: x.rows, cols: x.cols };
}

/** One token's down(silu(x gate^T) * (x up^T)) in float64, token t of x [tokens, H]; weights in HF layout [out, in]. */
export function swigluRow(x: ArrayLike<number>, t: number, H: number, I: number, gate: ArrayLike<number>, up: ArrayLike<number>, down: ArrayLike<number>): Float64Array {
  const a = new Float64Array(I);
  for (let i = 0; i < I; i++) {
    let g = 0;
    let u = 0;
    for (let h = 0; h < H; h++) {
      g += x[t * H + h] * gate[i * H + h];
      u += x[t * H + h] * up[i * H + h];
    }
    a[i] = (g / (1 + Math.exp(-g))) * u;
  }
  const out = new Float64Array(H);
  for (let h = 0; h < H; h++) for (let i = 0; i < I; i++) out[h] += a[i] * down[h * I + i];
  return out;
}
