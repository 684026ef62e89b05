import { SeededRandom } from '../../server/src/plan/prng';

/** The plan methods' seeded generator, plus what fixtures need, so they are identical on every machine and run. */
export class Prng extends SeededRandom {
  normalArray(length: number, mean: number, std: number): Float32Array {
    const values = new Float32Array(length);
    for (let i = 0; i < length; i++) values[i] = mean + std * this.normal();
    return values;
  }

  /** A uniformly random permutation of 0..n-1 (Fisher–Yates). */
  permutation(n: number): number[] {
    const p = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [p[i], p[j]] = [p[j], p[i]];
    }
    return p;
  }
}
