import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Profiler } from '../../../server/src/profile/profiler';
import { DEFAULT_GATING_THRESHOLDS, LayerAccumulator, RoutingStatistics, type LayerAccumulatorState } from '../../../server/src/profile/statistics';
import type { LayerStatistics } from '../../../server/src/profile/types';
import { Prng } from '../../support/prng';
import { example, LN2, routing, sequence } from './fixture';

/** Gates and logits go through float32, so hand values match to ~1e-7. */
function close(actual: number, expected: number, what: string, tolerance = 1e-6): void {
  assert.ok(Math.abs(actual - expected) <= tolerance, `${what}: ${actual} is not ${expected}`);
}

function closeAll(actual: readonly number[], expected: readonly number[], what: string, tolerance = 1e-6): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  actual.forEach((value, i) => close(value, expected[i], `${what}[${i}]`, tolerance));
}

function layersOf(thresholds: readonly number[] = DEFAULT_GATING_THRESHOLDS, from = 0, to = 5): LayerStatistics[] {
  const statistics = new RoutingStatistics(thresholds);
  for (const layer of example(from, to)) statistics.add(layer);
  return statistics.finalize();
}

// Entropies of the example's tokens (nats): three tokens have p = {1/2, 1/4, 1/8, 1/8}, one is uniform, one is {8/11, 1/11 ×3}.
const H_EIGHTHS = 1.75 * LN2;
const H_UNIFORM = Math.log(4);
const H_ELEVENTHS = Math.log(11) - (24 / 11) * LN2;

describe('routing statistics, by hand', () => {
  const [layer0, layer1, layer2] = layersOf([0, 0.1, 0.3, 0.7]);

  it('counts tokens and routed slots per expert', () => {
    assert.deepEqual(layersOf().map((l) => l.layer), [0, 1, 2]);
    assert.equal(layer0.tokens, 5);
    assert.equal(layer0.routedSlots, 10);
    assert.deepEqual(layer0.tokenCounts, [3, 3, 3, 1]);
    closeAll(layer0.usageShare, [0.3, 0.3, 0.3, 0.1], 'usageShare');
  });

  it('sums gate weights over routed tokens, and softmax probabilities over all tokens', () => {
    closeAll(layer0.softCounts, [37 / 18, 1.5, 7 / 9, 2 / 3], 'softCounts');
    closeAll(layer0.fullSoftCounts, [19 / 11, 1.125 + 1 / 11, 0.875 + 1 / 11, 1 + 1 / 11], 'fullSoftCounts');
    close(layer0.fullSoftCounts.reduce((a, b) => a + b), 5, 'fullSoftCounts sum to the tokens');
    closeAll(layer0.meanGate, [37 / 54, 0.5, 7 / 27, 2 / 3], 'meanGate');
  });

  it('scores REAP as the mean of gate × output norm over routed tokens', () => {
    closeAll(layer0.reap, [23 / 27, 14 / 9, 1, 4], 'reap');
  });

  it('takes the highest-gate expert as top-1 (the first slot on a tie)', () => {
    closeAll(layer0.top1Share, [3 / 5, 1 / 5, 0, 1 / 5], 'top1Share');
  });

  it('averages the full-softmax entropy per layer and per routed expert', () => {
    close(layer0.meanEntropy, (3 * H_EIGHTHS + H_UNIFORM + H_ELEVENTHS) / 5, 'meanEntropy');
    closeAll(layer0.routedEntropy, [(H_EIGHTHS + H_UNIFORM + H_ELEVENTHS) / 3, (2 * H_EIGHTHS + H_UNIFORM) / 3, (2 * H_EIGHTHS + H_ELEVENTHS) / 3, H_EIGHTHS], 'routedEntropy');
    close(layer1.meanEntropy, Math.log(4), 'uniform logits have entropy ln E');
  });

  it('counts co-activations with token counts on the diagonal', () => {
    assert.deepEqual(layer0.coActivation, [
      [3, 2, 1, 0],
      [2, 3, 1, 0],
      [1, 1, 3, 1],
      [0, 0, 1, 1],
    ]);
  });

  it('derives cosine similarities of logit columns from the Gram matrix', () => {
    // Columns (units of ln 2): e0 = [2,0,0,3,0], e1 = [1,2,0,0,0], e2 = [0,1,0,0,1], e3 = [0,0,0,0,2].
    const expected = [
      [1, 2 / Math.sqrt(65), 0, 0],
      [2 / Math.sqrt(65), 1, 2 / Math.sqrt(10), 0],
      [0, 2 / Math.sqrt(10), 1, 1 / Math.sqrt(2)],
      [0, 0, 1 / Math.sqrt(2), 1],
    ];
    layer0.logitCosine.forEach((row, i) => closeAll(row, expected[i], `logitCosine[${i}]`));
    // All-zero logit columns have no direction: their cosines are 0, the diagonal included.
    assert.ok(layer1.logitCosine.flat().every((value) => value === 0));
  });

  it('derives the correlation of logit columns from the Gram matrix and the column sums', () => {
    // The same columns; correlation ignores the ln 2 unit. Expected values by the two-pass textbook formula.
    const columns = [[2, 0, 0, 3, 0], [1, 2, 0, 0, 0], [0, 1, 0, 0, 1], [0, 0, 0, 0, 2]];
    const pearson = (a: number[], b: number[]) => {
      const ma = a.reduce((s, x) => s + x, 0) / a.length;
      const mb = b.reduce((s, x) => s + x, 0) / b.length;
      const dot = (x: number[], y: number[], mx: number, my: number) => x.reduce((s, v, t) => s + (v - mx) * (y[t] - my), 0);
      return dot(a, b, ma, mb) / Math.sqrt(dot(a, a, ma, ma) * dot(b, b, mb, mb));
    };
    const correlation = layer0.logitCorrelation!;
    columns.forEach((a, i) => closeAll(correlation[i], columns.map((b) => pearson(a, b)), `logitCorrelation[${i}]`));
    // e1 and e3 never share a token and are centred apart: negatively correlated, though their cosine is 0.
    assert.ok(correlation[1][3] < 0 && layer0.logitCosine[1][3] === 0);
    // Constant (here all-zero) columns do not vary: no correlation with anything, the diagonal included.
    assert.ok(layer1.logitCorrelation!.flat().every((value) => value === 0));
  });

  it('draws the adaptive-gating curve from the top-2 probability margins', () => {
    // Margins p1 − p2: 1/4, 1/4, 0, 7/11, 1/4.
    closeAll(layer0.singleExpertShare, [4 / 5, 4 / 5, 1 / 5, 0], 'singleExpertShare');
    assert.deepEqual(layer1.singleExpertShare, [0, 0, 0, 0]);
    const curve = layersOf()[0].singleExpertShare;
    assert.equal(curve.length, 41);
    assert.equal(curve[DEFAULT_GATING_THRESHOLDS.indexOf(0.2)], 4 / 5);
    assert.equal(curve[DEFAULT_GATING_THRESHOLDS.indexOf(0.3)], 1 / 5);
    assert.equal(curve[DEFAULT_GATING_THRESHOLDS.indexOf(0.65)], 0);
  });

  it('skips dropped slots (-1): they count as routed nowhere', () => {
    assert.equal(layer2.routedSlots, 9);
    assert.deepEqual(layer2.tokenCounts, [3, 3, 2, 1]);
    closeAll(layer2.usageShare, [3 / 9, 3 / 9, 2 / 9, 1 / 9], 'usageShare');
    assert.deepEqual(layer2.coActivation[2], [1, 1, 2, 0]);
  });

  it('rejects routing whose arrays disagree', () => {
    const accumulator = new LayerAccumulator(0, 4, 2);
    const bad = { ...example()[0], selectedExperts: new Int32Array(9) };
    assert.throws(() => accumulator.add(bad), /disagree/);
    assert.throws(() => accumulator.add(example()[1]), /was given routing of layer 1/);
    const outOfRange = routing(0, [[0, 0, 0, 0]], [[0, 4]], [[0.5, 0.5]], [[1, 1]]);
    assert.throws(() => accumulator.add(outOfRange), /out of range/);
  });
});

describe('merging and memory', () => {
  it('two halves merged give the whole, also through a structured clone (a worker boundary)', () => {
    const whole = layersOf();
    const first = new RoutingStatistics();
    const second = new RoutingStatistics();
    for (const layer of example(0, 2)) first.add(layer);
    for (const layer of example(2, 5)) second.add(layer);
    const merged = new RoutingStatistics();
    merged.merge(structuredClone(second.toState()) as LayerAccumulatorState[]);
    merged.merge(first);
    const result = merged.finalize();
    assert.equal(result.length, whole.length);
    result.forEach((layer, l) => {
      for (const [key, value] of Object.entries(layer)) {
        const expected = whole[l][key as keyof LayerStatistics];
        const flat = (v: unknown) => (Array.isArray(v) ? v.flat() : [v]) as number[];
        closeAll(flat(value), flat(expected), `layer ${l} ${key}`, 1e-12);
      }
    });
  });

  it('refuses to merge different layers or threshold grids', () => {
    const a = new LayerAccumulator(0, 4, 2);
    assert.throws(() => a.merge(new LayerAccumulator(1, 4, 2)), /cannot merge/);
    assert.throws(() => a.merge(new LayerAccumulator(0, 4, 2, [0, 0.5])), /different gating thresholds/);
  });

  it('holds the same number of bytes after 5 tokens and after 50,000', () => {
    const prng = new Prng(11);
    const E = 8;
    const k = 2;
    const randomRouting = (tokens: number) => {
      const experts = new Int32Array(tokens * k);
      for (let t = 0; t < tokens; t++) {
        experts[t * k] = prng.int(E);
        experts[t * k + 1] = (experts[t * k] + 1 + prng.int(E - 1)) % E;
      }
      return { layer: 3, numExperts: E, topK: k, routerLogits: prng.normalArray(tokens * E, 0, 1), selectedExperts: experts, gateWeights: new Float32Array(tokens * k).fill(0.5), expertOutputNorms: prng.normalArray(tokens * k, 5, 1) };
    };
    const statistics = new RoutingStatistics();
    statistics.add(randomRouting(5));
    const small = statistics.byteSize;
    for (let i = 0; i < 50; i++) statistics.add(randomRouting(1000));
    assert.equal(statistics.byteSize, small);
    assert.equal(statistics.finalize()[0].tokens, 50_005);
    // Two E×E Float64 matrices dominate: O(E²) per layer.
    assert.ok(small < 4 * E * E * 8, `${small} bytes for E=${E}`);
  });
});

describe('profiler', () => {
  it('accumulates sequences and keeps token records of the first N tokens only', () => {
    const profiler = new Profiler({ tokenRecords: 3 });
    profiler.addSequence(sequence(0, 5), example(0, 5));
    profiler.addSequence(sequence(0, 5, 8), example(0, 5));
    const result = profiler.finalize();
    assert.equal(result.tokens, 10);
    assert.equal(result.layers[0].tokens, 10);
    assert.equal(result.records.length, 3);
    assert.deepEqual(result.records[0], {
      row: 7, start: 0, end: 2, token: 100,
      experts: [[0, 1], [0, 1], [0, 1]],
      gates: [[Math.fround(2 / 3), Math.fround(1 / 3)], [0.5, 0.5], [Math.fround(2 / 3), Math.fround(1 / 3)]],
    });
  });

  it('orders each token\'s experts by gate and leaves out dropped slots', () => {
    const profiler = new Profiler({ tokenRecords: 10 });
    profiler.addSequence(sequence(4, 5), example(4, 5));
    const [record] = profiler.finalize().records;
    assert.deepEqual(record.experts, [[3, 2], [0, 1], [3]]);
    assert.equal(record.start, 12);
  });

  it('merges partial profilers into the first N tokens in dataset order, whatever the merge order', () => {
    const early = new Profiler({ tokenRecords: 4 });
    const late = new Profiler({ tokenRecords: 4 });
    early.addSequence(sequence(0, 5, 1), example(0, 5));
    late.addSequence(sequence(0, 5, 2), example(0, 5));
    const merged = new Profiler({ tokenRecords: 4 });
    merged.merge(structuredClone(late.toState()));
    merged.merge(early);
    const result = merged.finalize();
    assert.equal(result.tokens, 10);
    assert.deepEqual(result.records.map((r) => [r.row, r.start]), [[1, 0], [1, 3], [1, 6], [1, 9]]);
  });

  it('rejects a sequence whose routing covers a different number of tokens', () => {
    const profiler = new Profiler({ tokenRecords: 1 });
    assert.throws(() => profiler.addSequence(sequence(0, 4), example(0, 5)), /logits for 5 tokens, the sequence has 4/);
  });
});
