// A routing example small enough to work out by hand: 3 MoE layers × 4 experts × 5 tokens, top-2.
// Logits are integers times ln 2, so every softmax is a ratio of powers of two and the cosine of
// two logit columns is a ratio of integer dot products.
import type { LayerRouting } from '../../../server/src/profile/statistics';
import type { SequenceTokens } from '../../../server/src/profile/tokenRecords';

export const LN2 = Math.log(2);

/** Layer 0, token by token: logits in units of ln 2, chosen experts (slot order), gates, output norms. */
export const LAYER0 = {
  logits: [
    [2, 1, 0, 0], // p = [1/2, 1/4, 1/8, 1/8]
    [0, 2, 1, 0], // p = [1/8, 1/2, 1/4, 1/8]
    [0, 0, 0, 0], // uniform
    [3, 0, 0, 0], // p = [8/11, 1/11, 1/11, 1/11]
    [0, 0, 1, 2], // p = [1/8, 1/8, 1/4, 1/2]
  ],
  experts: [[0, 1], [1, 2], [0, 1], [0, 2], [3, 2]],
  gates: [[2 / 3, 1 / 3], [2 / 3, 1 / 3], [1 / 2, 1 / 2], [8 / 9, 1 / 9], [2 / 3, 1 / 3]],
  norms: [[1, 2], [3, 3], [2, 4], [1, 9], [6, 3]],
};

export function routing(layer: number, logits: number[][], experts: number[][], gates: number[][], norms: number[][]): LayerRouting {
  return {
    layer,
    numExperts: logits[0].length,
    topK: experts[0].length,
    routerLogits: Float32Array.from(logits.flat(), (a) => a * LN2),
    selectedExperts: Int32Array.from(experts.flat()),
    gateWeights: Float32Array.from(gates.flat()),
    expertOutputNorms: Float32Array.from(norms.flat()),
  };
}

/** The three layers over tokens [from, to): layer 0 above, layer 1 uniform, layer 2 = layer 0 with token 4's second slot dropped. */
export function example(from = 0, to = 5): LayerRouting[] {
  const pick = <T>(rows: T[]) => rows.slice(from, to);
  const layer2Experts = LAYER0.experts.map((row, t) => (t === 4 ? [row[0], -1] : row));
  return [
    routing(0, pick(LAYER0.logits), pick(LAYER0.experts), pick(LAYER0.gates), pick(LAYER0.norms)),
    routing(1, pick(LAYER0.logits.map(() => [0, 0, 0, 0])), pick(LAYER0.experts.map(() => [0, 1])), pick(LAYER0.gates.map(() => [0.5, 0.5])), pick(LAYER0.norms)),
    routing(2, pick(LAYER0.logits), pick(layer2Experts), pick(LAYER0.gates), pick(LAYER0.norms)),
  ];
}

/** The tokens of the example as one sequence of row 7: "ab cd ef gh ij". */
export function sequence(from = 0, to = 5, row = 7): SequenceTokens {
  const all = [0, 1, 2, 3, 4];
  return {
    row,
    tokenIds: all.slice(from, to).map((t) => 100 + t),
    offsets: all.slice(from, to).map((t) => [3 * t, 3 * t + 2] as const),
  };
}
