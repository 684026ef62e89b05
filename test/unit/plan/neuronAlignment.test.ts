import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type AlignmentSource, alignMerges, alignNeurons, bestAssignment, type ExpertMatrices, MAX_ALIGNED_NEURONS, neuronSimilarity } from '../../../server/src/plan/methods/neuronAlignment';
import { mergeExperts, resolveWeight } from '../../../server/src/runtime/layerWeights';
import { permuteColumns, permuteRows } from '../../../server/src/runtime/neuronOrder';
import { Prng } from '../../support/prng';
import { countingSource, randomExpert as randomExpertOf, renumber as renumberOf } from '../../support/expertMatrices';

const prng = new Prng(16);
const I = 12;
const H = 5;

const randomExpert = (intermediate = I, hidden = H) => randomExpertOf(prng, intermediate, hidden);

const randomPermutation = (n: number) => prng.permutation(n);

/** Written out by index, not with the production helpers (test/support/expertMatrices.ts). */
const renumber = (expert: ExpertMatrices, order: number[], intermediate = I, hidden = H) => renumberOf(expert, order, intermediate, hidden);

/** y = W_down (silu(W_gate x) ⊙ W_up x) in float64. */
function swiglu(expert: ExpertMatrices, x: number[], intermediate = I, hidden = H): number[] {
  const act = Array.from({ length: intermediate }, (_, k) => {
    let g = 0;
    let u = 0;
    for (let h = 0; h < hidden; h++) {
      g += expert.gate[k * hidden + h] * x[h];
      u += expert.up[k * hidden + h] * x[h];
    }
    return (g / (1 + Math.exp(-g))) * u;
  });
  return Array.from({ length: hidden }, (_, h) => act.reduce((s, a, k) => s + expert.down[h * intermediate + k] * a, 0));
}

function permutations(n: number): number[][] {
  if (n === 0) return [[]];
  return permutations(n - 1).flatMap((p) => Array.from({ length: n }, (_, at) => [...p.slice(0, at), n - 1, ...p.slice(at)]));
}

const inverse = (p: number[]) => {
  const q = new Array<number>(p.length);
  p.forEach((v, k) => (q[v] = k));
  return q;
};

async function merged(experts: ExpertMatrices[], row: number[], neuronOrder?: Record<number, number[]>): Promise<ExpertMatrices> {
  const [m] = mergeExperts(experts, [row], { neuronOrder });
  return { gate: await resolveWeight(m.gate), up: await resolveWeight(m.up), down: await resolveWeight(m.down) };
}

describe('neuron alignment', () => {
  it('a SwiGLU expert computes the same output after its neurons are renumbered', () => {
    const expert = randomExpert();
    const order = randomPermutation(I);
    const renumbered = { gate: permuteRows(expert.gate, order, H), up: permuteRows(expert.up, order, H), down: permuteColumns(expert.down, order) };
    assert.deepEqual(renumbered, renumber(expert, order), 'the production helpers renumber as written out by index');
    for (let trial = 0; trial < 5; trial++) {
      const x = Array.from({ length: H }, () => prng.normal());
      const [a, b] = [swiglu(expert, x), swiglu(renumbered, x)];
      a.forEach((y, h) => assert.ok(Math.abs(y - b[h]) <= 1e-12 * Math.max(1, Math.abs(y)), `output ${h}: ${y} against ${b[h]}`));
    }
    // A renumbering that does not move gate, up and down together changes the function (the test could fail).
    const gateOnly = { ...expert, gate: permuteRows(expert.gate, order, H) };
    const x = Array.from({ length: H }, () => prng.normal());
    assert.ok(swiglu(gateOnly, x).some((y, h) => Math.abs(y - swiglu(expert, x)[h]) > 1e-6));
  });

  it('an expert that is a renumbering of another aligns back exactly, and their merge is bit-identical to the original', async () => {
    const original = randomExpert();
    const shuffle = randomPermutation(I);
    const member = renumber(original, shuffle);
    const order = alignNeurons(original, member, I, H);
    assert.deepEqual(order, inverse(shuffle));
    assert.deepEqual(renumber(member, order), original);
    // 0.5·w + 0.5·w is exact in fp32: the aligned merge of an expert with its renumbered copy is that expert.
    const aligned = await merged([original, member], [0.5, 0.5], { 1: order });
    assert.deepEqual(aligned, original);
    const unaligned = await merged([original, member], [0.5, 0.5]);
    assert.notDeepEqual(unaligned, original);
  });

  it('a row that copies one expert uses it as stored, whatever its neuron order', async () => {
    const experts = [randomExpert(), randomExpert()];
    assert.deepEqual(await merged(experts, [0, 1], { 1: randomPermutation(I) }), experts[1]);
  });

  it('the assignment is the brute-force optimum on small cases', () => {
    for (let n = 1; n <= 6; n++) {
      for (let trial = 0; trial < 4; trial++) {
        const similarity = trial < 2
          ? Array.from({ length: n }, () => Float64Array.from({ length: n }, () => 2 * prng.next() - 1))
          : neuronSimilarity(randomExpert(n, 3), randomExpert(n, 3), n, 3);
        const total = (p: number[]) => p.reduce((s, m, k) => s + similarity[k][m], 0);
        const best = Math.max(...permutations(n).map(total));
        const order = bestAssignment(similarity);
        assert.deepEqual([...order].sort((a, b) => a - b), Array.from({ length: n }, (_, i) => i), 'a permutation');
        assert.ok(Math.abs(total(order) - best) < 1e-12, `n = ${n}: ${total(order)} against the optimum ${best}`);
      }
    }
  });

  it('the similarity is the cosine of each neuron\'s [gate row, up row, down column]', () => {
    const [a, b] = [randomExpert(4, 3), randomExpert(4, 3)];
    const vector = (e: ExpertMatrices, k: number) => [...e.gate.slice(k * 3, k * 3 + 3), ...e.up.slice(k * 3, k * 3 + 3), ...[0, 1, 2].map((h) => e.down[h * 4 + k])];
    const similarity = neuronSimilarity(a, b, 4, 3);
    for (let k = 0; k < 4; k++) {
      for (let m = 0; m < 4; m++) {
        const [u, v] = [vector(a, k), vector(b, m)];
        const cosine = u.reduce((s, x, i) => s + x * v[i], 0) / Math.hypot(...u) / Math.hypot(...v);
        assert.ok(Math.abs(similarity[k][m] - cosine) < 1e-12);
      }
    }
  });
});

describe('alignMerges', () => {
  const sourceOf = (experts: ExpertMatrices[], overrides: Partial<AlignmentSource> = {}) => countingSource(experts, I, H, overrides);

  it('renumbers every merged member to its row\'s kept expert and leaves kept-only rows and pruned layers alone', async () => {
    const base = [randomExpert(), randomExpert()];
    const shuffles = [randomPermutation(I), randomPermutation(I)];
    // Experts 1 and 3 are renumbered copies of 0 and 2; row 0 keeps 0 and merges 1, row 1 keeps 3 and merges 2; 4 is copied.
    const experts = [base[0], renumber(base[0], shuffles[0]), base[1], renumber(base[1], shuffles[1]), randomExpert()];
    const layers = [
      { layer: 0, keptExperts: [0, 3, 4], mergeMatrix: [[0.6, 0.4, 0, 0, 0], [0, 0, 0.5, 0.5, 0], [0, 0, 0, 0, 1]] },
      { layer: 1, keptExperts: [1, 2] },
    ];
    const { layers: aligned, record } = await alignMerges(layers, sourceOf(experts));
    assert.deepEqual(record, {});
    assert.deepEqual(aligned[0].neuronOrder, { 1: inverse(shuffles[0]), 2: shuffles[1] });
    assert.deepEqual(aligned[1], layers[1]);
    assert.deepEqual(aligned[0].mergeMatrix, layers[0].mergeMatrix);
  });

  it('merges unaligned, saying why, where the experts cannot be renumbered or are too wide', async () => {
    const layers = [{ layer: 0, keptExperts: [0], mergeMatrix: [[0.5, 0.5]] }, { layer: 1, keptExperts: [0], mergeMatrix: [[0.5, 0.5]] }];
    const refused = sourceOf([randomExpert(), randomExpert()], { refusal: (layer) => (layer === 0 ? 'fused experts' : undefined), intermediate: (layer) => (layer === 1 ? MAX_ALIGNED_NEURONS + 1 : I) });
    const { layers: aligned, record } = await alignMerges(layers, refused);
    assert.deepEqual(aligned, layers);
    assert.equal(record.neuronAlignmentSkipped?.[0], 'fused experts');
    assert.match(record.neuronAlignmentSkipped?.[1] ?? '', new RegExp(`${MAX_ALIGNED_NEURONS + 1} intermediate neurons, more than the ${MAX_ALIGNED_NEURONS}`));
    assert.deepEqual(refused.reads, [], 'no expert is read for a layer that is not aligned');
  });

  it('refuses an expert merged into two rows (one order cannot serve both)', async () => {
    const experts = [randomExpert(), randomExpert(), randomExpert()];
    await assert.rejects(alignMerges([{ layer: 0, keptExperts: [0, 2], mergeMatrix: [[0.5, 0.5, 0], [0, 0.5, 0.5]] }], sourceOf(experts)), /expert 1 is merged into more than one row/);
  });
});
