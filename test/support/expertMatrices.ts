/**
 * Tiny SwiGLU experts for the neuron-alignment tests (UNCURL's and EEP's): random ones, a renumbering
 * written out by index (not with the production helpers, so the tests check those against it), and an
 * alignment source over a list of them that records which experts were read.
 */
import type { AlignmentSource, ExpertMatrices } from '../../server/src/plan/methods/neuronAlignment';
import type { Prng } from './prng';

export function randomExpert(prng: Prng, intermediate: number, hidden: number): ExpertMatrices {
  const matrix = (n: number) => Float32Array.from({ length: n }, () => prng.normal());
  return { gate: matrix(intermediate * hidden), up: matrix(intermediate * hidden), down: matrix(hidden * intermediate) };
}

/** Neuron k of the result is neuron order[k] of `expert`: row k of gate and up, column k of down. */
export function renumber(expert: ExpertMatrices, order: number[], intermediate: number, hidden: number): ExpertMatrices {
  const gate = new Float32Array(intermediate * hidden);
  const up = new Float32Array(intermediate * hidden);
  const down = new Float32Array(hidden * intermediate);
  for (let k = 0; k < intermediate; k++) {
    for (let h = 0; h < hidden; h++) {
      gate[k * hidden + h] = expert.gate[order[k] * hidden + h];
      up[k * hidden + h] = expert.up[order[k] * hidden + h];
      down[h * intermediate + k] = expert.down[h * intermediate + order[k]];
    }
  }
  return { gate, up, down };
}

/** Layer-independent experts by id, every read recorded in `reads`. */
export function countingSource(experts: ExpertMatrices[], intermediate: number, hidden: number, overrides: Partial<AlignmentSource> = {}): AlignmentSource & { reads: number[] } {
  const reads: number[] = [];
  return { reads, hidden, intermediate: () => intermediate, refusal: () => undefined, expert: async (_layer, id) => (reads.push(id), experts[id]), ...overrides };
}
