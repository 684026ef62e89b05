import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { moeLayerShapes } from '../../../server/src/plan/generatePlan';
import { eepSearch } from '../../../server/src/plan/methods/eep';
import { mergedMembers, routerAnchors } from '../../../server/src/plan/methods/eepAlignment';
import { type AlignmentSource, alignNeurons, type ExpertMatrices, MAX_ALIGNED_NEURONS } from '../../../server/src/plan/methods/neuronAlignment';
import type { PlanLayer } from '../../../server/src/plan/planFile';
import { checkpointAlignmentSource } from '../../../server/src/plan/run/alignmentSource';
import { oneHotRows, toRuntimePlan } from '../../../server/src/plan/runtimeConversion';
import { ModelEngine } from '../../../server/src/runtime/modelEngine';
import type { RuntimePlan } from '../../../server/src/runtime/runtimePlan';
import { Prng } from '../../support/prng';
import { referenceForward } from '../../support/referenceForward';
import { assertClose, randomSequences, withCheckpoint } from '../runtime/runtimeFixtures';
import { countingSource, randomExpert as randomExpertOf, renumber as renumberOf } from '../../support/expertMatrices';

const prng = new Prng(41);
const I = 10;
const H = 4;

const randomExpert = () => randomExpertOf(prng, I, H);
const renumber = (expert: ExpertMatrices, order: number[]) => renumberOf(expert, order, I, H);

const inverse = (p: number[]) => {
  const q = new Array<number>(p.length);
  p.forEach((v, k) => (q[v] = k));
  return q;
};

/**
 * Σ_j c_j · expert_j in float64, each term of a row with two or more terms renumbered by its neuron
 * order first (the plan format's definition, docs/plan-format.md), written here without the runtime.
 */
function mergedByDefinition(experts: ExpertMatrices[], row: number[], neuronOrder: Record<number, number[]> = {}): { gate: Float64Array; up: Float64Array; down: Float64Array } {
  const merged = { gate: new Float64Array(I * H), up: new Float64Array(I * H), down: new Float64Array(H * I) };
  const terms = row.filter((c) => c !== 0).length;
  row.forEach((c, j) => {
    if (c === 0) return;
    const term = terms > 1 && neuronOrder[j] ? renumber(experts[j], neuronOrder[j]) : experts[j];
    for (const key of ['gate', 'up', 'down'] as const) term[key].forEach((w, x) => (merged[key][x] += c * w));
  });
  return merged;
}

/** y = W_down (silu(W_gate x) ⊙ W_up x) in float64. */
function swiglu(expert: { gate: ArrayLike<number>; up: ArrayLike<number>; down: ArrayLike<number> }, x: number[]): number[] {
  const act = Array.from({ length: I }, (_, k) => {
    let g = 0;
    let u = 0;
    for (let h = 0; h < H; h++) {
      g += expert.gate[k * H + h] * x[h];
      u += expert.up[k * H + h] * x[h];
    }
    return (g / (1 + Math.exp(-g))) * u;
  });
  return Array.from({ length: H }, (_, h) => act.reduce((s, a, k) => s + expert.down[h * I + k] * a, 0));
}

/** Router rows: 1 points nearly where 0 does, 3 nearly where 2 does. */
const ROUTER = Float32Array.from([1, 0, 0, 0, 0.9, 0.1, 0, 0, 0, 0, 1, 0, 0, 0.1, 0.9, 0]);

function sourceOf(experts: ExpertMatrices[], overrides: Partial<AlignmentSource> = {}): AlignmentSource & { reads: number[] } {
  return countingSource(experts, I, H, { router: async () => ROUTER, ...overrides });
}

describe('EEP neuron alignment', () => {
  it('aligns each other expert to the kept expert whose router row is most like its own (cosine, lowest id on ties)', () => {
    const router = Float32Array.from([
      5, 4, 0, // 0: dot product 40 with 3's row but 5 with 1's; the cosine (0.78 against 0.62) picks 1
      1, 0, 0, // 1: kept
      0.1, 2, 0, // 2: 3
      0, 10, 0, // 3: kept
      0, 0, 1, // 4: orthogonal to both, a tie: 1
    ]);
    assert.deepEqual([...routerAnchors([3, 1], router, 3)].sort(([a], [b]) => a - b), [[0, 1], [2, 3], [4, 1]]);
  });

  it('renumbers only experts that a merged row combines and no row keeps', () => {
    const layer = {
      keptExperts: [0, 2, 5],
      // 2 is a term of row 0 but kept; 4 is alone in its row, where renumbering it would change nothing.
      mergeMatrix: [[0.7, 0.3, 0.01, 0, 0, 0], [0, 0, 0.9, -0.2, 0, 0], [0, 0, 0, 0, 0.8, 0]],
    };
    assert.deepEqual(mergedMembers(layer), [1, 3]);
    assert.deepEqual(mergedMembers({ keptExperts: [0, 1], mergeMatrix: [[1, 0, 0], [0, 1, 0]] }), []);
  });

  // Experts 1 and 3 are exact renumberings of the kept experts 0 and 2, so averaging each into its kept
  // expert, aligned, computes the kept expert exactly; averaged neuron k with neuron k it does not.
  const shuffles = [prng.permutation(I), prng.permutation(I)];
  const base = [randomExpert(), randomExpert()];
  const experts = [base[0], renumber(base[0], shuffles[0]), base[1], renumber(base[1], shuffles[1])];
  const halves: PlanLayer = { layer: 0, keptExperts: [0, 2], routerMap: oneHotRows([0, 2], 4), mergeMatrix: [[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]] };
  const inputs = Array.from({ length: 6 }, () => Array.from({ length: H }, () => prng.normal()));
  /** Minus how far each merged row's function is from its kept expert's, as the candidate's plan defines it. */
  const functionError = (plan: RuntimePlan['layers'][number]) => {
    let error = 0;
    plan.mergeMatrix!.forEach((row, i) => {
      const merged = mergedByDefinition(experts, row, plan.neuronOrder);
      for (const x of inputs) {
        const [want, got] = [swiglu(experts[[0, 2][i]], x), swiglu(merged, x)];
        want.forEach((y, h) => (error += (y - got[h]) ** 2));
      }
    });
    return -error;
  };
  const search = (source: AlignmentSource | undefined, seen: RuntimePlan[], neuronAlignment?: boolean) => eepSearch({
    layers: [{ layer: 0, numExperts: 4 }], target: 2, phases: ['merge'], initial: [[halves]], alignment: source, neuronAlignment,
    populationSize: 6, eliteSize: 2, generations: 4, budget: 40, seed: 5,
    fitness: async (plan) => (seen.push(plan), functionError(plan.layers[0])),
  });

  it('merges a renumbered copy into its kept expert exactly when aligned, and not unaligned; the result carries the orders', async () => {
    const source = sourceOf(experts);
    const seen: RuntimePlan[] = [];
    const aligned = await search(source, seen);
    const expected = { 1: inverse(shuffles[0]), 3: inverse(shuffles[1]) };
    // The first candidate is the seed: both halves reproduce their kept expert to the last bit.
    assert.deepEqual(seen[0].layers[0].mergeMatrix, halves.mergeMatrix);
    assert.deepEqual(seen[0].layers[0].neuronOrder, expected);
    assert.ok(functionError(seen[0].layers[0]) === 0, 'exactly');
    // Every candidate scored carries the same orders; kept experts none.
    for (const plan of seen) assert.deepEqual(plan.layers[0].neuronOrder, expected);
    assert.ok(aligned.fitness === 0, 'no candidate beats an exact reproduction');
    assert.deepEqual(aligned.layers, [{ ...halves, neuronOrder: expected }]);
    assert.equal(aligned.parameters.neuronAlignment, true);
    assert.deepEqual(aligned.neuronAlignmentSkipped, undefined);
    // Each pair aligned once for the whole search, not per candidate: (0, 1) and (2, 3), two reads each.
    assert.ok(aligned.evaluations > 10);
    assert.deepEqual(source.reads.sort(), [0, 1, 2, 3]);
    await search(source, []);
    assert.equal(source.reads.length, 4, 'a second search with the same source reuses the alignments');

    // Turned off, or with no weights to align: neuron k averaged with neuron k, and nothing read.
    const unread = sourceOf(experts);
    for (const [alignment, neuronAlignment] of [[unread, false], [undefined, undefined]] as const) {
      const unalignedSeen: RuntimePlan[] = [];
      const unaligned = await search(alignment, unalignedSeen, neuronAlignment);
      assert.equal(unaligned.parameters.neuronAlignment, false);
      assert.ok(unalignedSeen.every((plan) => plan.layers[0].neuronOrder === undefined));
      const seedError = functionError(unalignedSeen[0].layers[0]);
      assert.ok(seedError < -1, `the unaligned halves miss their kept experts (${seedError})`);
      assert.ok(unaligned.fitness < aligned.fitness);
    }
    assert.deepEqual(unread.reads, []);
    await assert.rejects(search(sourceOf(experts, { router: undefined }), []), /needs the router weights/);
  });

  it('merges unaligned, saying why, where the experts cannot be renumbered or are too wide', async () => {
    for (const [overrides, reason] of [
      [{ refusal: () => 'fused experts' }, /fused experts/],
      [{ intermediate: () => MAX_ALIGNED_NEURONS + 1 }, new RegExp(`${MAX_ALIGNED_NEURONS + 1} intermediate neurons`)],
    ] as const) {
      const source = sourceOf(experts, overrides);
      const seen: RuntimePlan[] = [];
      const result = await search(source, seen);
      assert.match(result.neuronAlignmentSkipped?.[0] ?? '', reason);
      assert.ok(seen.every((plan) => plan.layers[0].neuronOrder === undefined));
      assert.deepEqual(source.reads, []);
    }
  });

  it('the merge phase\'s result carries neuron orders that the runtime applies, as the float64 reference does', async () => {
    await withCheckpoint({ architecture: 'MixtralForCausalLM', seed: 17, numLayers: 2, numExperts: 8, mlpOnlyLayers: [] }, async ({ spec, weights }) => {
      const engine = await ModelEngine.create(spec, weights);
      try {
        const sequences = randomSequences([9, 6], spec.vocabSize, 3);
        const shapes = moeLayerShapes(spec);
        const kept = [0, 2, 4, 6];
        // Each odd expert merged into the even one before it: every row combines two experts.
        const seed: PlanLayer[] = shapes.map((s) => ({ layer: s.layer, keptExperts: kept, routerMap: oneHotRows(kept, 8), mergeMatrix: kept.map((k) => Array.from({ length: 8 }, (_, j) => (j === k ? 0.6 : j === k + 1 ? 0.4 : 0))) }));
        /** Summed next-token loss over both sequences. */
        const loss = async (plan: RuntimePlan) => (await engine.forward({ sequences, outputs: { loss: true }, plan })).sequences.reduce((sum, r) => sum + r.loss!.reduce((a, b) => a + b, 0), 0);
        const source = checkpointAlignmentSource(spec, weights, 'F32');
        const result = await eepSearch({ layers: shapes, target: 4, phases: ['merge'], initial: [seed], alignment: source, populationSize: 4, eliteSize: 2, generations: 1, budget: 8, seed: 1, fitness: async (plan) => -(await loss(plan)) });
        const plan = toRuntimePlan(result.layers, 8);
        for (const layer of result.layers) {
          assert.ok(layer.mergeMatrix && layer.neuronOrder, `layer ${layer.layer} is merged and aligned`);
          assert.deepEqual(Object.keys(layer.neuronOrder).map(Number), [1, 3, 5, 7], 'the merged experts, not the kept ones');
          const anchors = routerAnchors(layer.keptExperts, await source.router!(layer.layer), spec.hiddenSize);
          for (const [member, order] of Object.entries(layer.neuronOrder)) {
            const [anchor, merged] = [await source.expert(layer.layer, anchors.get(Number(member))!), await source.expert(layer.layer, Number(member))];
            assert.deepEqual(order, alignNeurons(anchor, merged, source.intermediate(layer.layer), spec.hiddenSize));
          }
        }
        assert.ok(Math.abs(-(await loss(plan)) - result.fitness) < 1e-9, 'the result is the plan the search scored');
        const forward = await engine.forward({ sequences, outputs: { logits: 'all' }, plan });
        const unaligned: RuntimePlan = { layers: Object.fromEntries(Object.entries(plan.layers).map(([l, p]) => [l, { ...p, neuronOrder: undefined }])) };
        const plain = await engine.forward({ sequences, outputs: { logits: 'all' }, plan: unaligned });
        assert.ok(forward.sequences[0].logits!.some((v, i) => Math.abs(v - plain.sequences[0].logits![i]) > 1e-4), 'the orders change the merge');
        for (const [s, tokens] of sequences.entries()) {
          const reference = await referenceForward(spec, weights, tokens, plan);
          assertClose(forward.sequences[s].logits!, reference.logits, `sequence ${s} logits`);
        }
      } finally {
        await engine.close();
      }
    });
  });
});
