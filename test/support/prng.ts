import { SeededRandom } from '../../server/src/plan/prng';

/** The plan methods' seeded generator, plus what fixtures need, so they are identical on every machine and run. */
export class Prng extends SeededRandom {
  normalArray(length: number, mean: number, std: number): Float32Array {
    const values = new Float32Array(length);
    for (let i = 0; i < length; i++) values[i] = mean + std * this.normal();
    return values;
  }
}
