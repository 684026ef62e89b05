/** Small dense linear algebra for spectral clustering (E ≤ 128, so O(E³) per sweep is cheap). */
import type { SeededRandom } from '../prng';

/**
 * Eigen-decomposition of a symmetric matrix by cyclic Jacobi rotations. Returns eigenvalues ascending
 * and, for each, its unit eigenvector (`vectors[k]` belongs to `values[k]`).
 */
export function symmetricEigen(matrix: number[][], tolerance = 1e-12, maxSweeps = 100): { values: number[]; vectors: number[][] } {
  const n = matrix.length;
  const a = matrix.map((row) => row.slice());
  const v: number[][] = Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => (i === j ? 1 : 0)));
  for (let sweep = 0; sweep < maxSweeps; sweep++) {
    let offDiagonal = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) offDiagonal += a[p][q] * a[p][q];
    if (offDiagonal < tolerance) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        if (Math.abs(a[p][q]) < 1e-300) continue;
        const theta = (a[q][q] - a[p][p]) / (2 * a[p][q]);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k][p];
          const akq = a[k][q];
          a[k][p] = c * akp - s * akq;
          a[k][q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p][k];
          const aqk = a[q][k];
          a[p][k] = c * apk - s * aqk;
          a[q][k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k][p];
          const vkq = v[k][q];
          v[k][p] = c * vkp - s * vkq;
          v[k][q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => a[i][i] - a[j][j] || i - j);
  return { values: order.map((i) => a[i][i]), vectors: order.map((i) => v.map((row) => row[i])) };
}

function squaredDistance(x: number[], y: number[]): number {
  let sum = 0;
  for (let i = 0; i < x.length; i++) sum += (x[i] - y[i]) ** 2;
  return sum;
}

/**
 * k-means with k-means++ seeding from `random`, best of `restarts` runs by inertia. Every cluster ends
 * non-empty (k ≤ points): an emptied cluster takes the point farthest from its centre.
 */
export function kMeans(points: number[][], k: number, random: SeededRandom, restarts: number, maxIterations = 100): number[] {
  let best: { labels: number[]; inertia: number } | undefined;
  for (let run = 0; run < restarts; run++) {
    const result = kMeansOnce(points, k, random, maxIterations);
    if (!best || result.inertia < best.inertia - 1e-12) best = result;
  }
  return best!.labels;
}

function kMeansOnce(points: number[][], k: number, random: SeededRandom, maxIterations: number): { labels: number[]; inertia: number } {
  const n = points.length;
  const centres: number[][] = [points[random.int(n)].slice()];
  while (centres.length < k) {
    const weights = points.map((p) => Math.min(...centres.map((c) => squaredDistance(p, c))));
    const total = weights.reduce((s, w) => s + w, 0);
    let pick = 0;
    if (total > 0) {
      let r = random.next() * total;
      while (pick < n - 1 && (r -= weights[pick]) >= 0) pick++;
    } else {
      pick = random.int(n);
    }
    centres.push(points[pick].slice());
  }
  let labels = new Array<number>(n).fill(-1);
  for (let iteration = 0; iteration < maxIterations; iteration++) {
    const next = points.map((p) => {
      let label = 0;
      for (let c = 1; c < k; c++) if (squaredDistance(p, centres[c]) < squaredDistance(p, centres[label])) label = c;
      return label;
    });
    fillEmptyClusters(points, next, centres, k);
    const changed = next.some((label, i) => label !== labels[i]);
    labels = next;
    for (let c = 0; c < k; c++) {
      const members = points.filter((_, i) => labels[i] === c);
      centres[c] = members[0].map((_, d) => members.reduce((s, m) => s + m[d], 0) / members.length);
    }
    if (!changed) break;
  }
  const inertia = points.reduce((s, p, i) => s + squaredDistance(p, centres[labels[i]]), 0);
  return { labels, inertia };
}

function fillEmptyClusters(points: number[][], labels: number[], centres: number[][], k: number): void {
  for (let c = 0; c < k; c++) {
    if (labels.includes(c)) continue;
    const sizes = new Array<number>(k).fill(0);
    for (const label of labels) sizes[label]++;
    let farthest = -1;
    for (let i = 0; i < points.length; i++) {
      if (sizes[labels[i]] < 2) continue;
      if (farthest < 0 || squaredDistance(points[i], centres[labels[i]]) > squaredDistance(points[farthest], centres[labels[farthest]])) farthest = i;
    }
    labels[farthest] = c;
    centres[c] = points[farthest].slice();
  }
}
