import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compensationScales, type CompensationSums, solveSymmetric } from '../../../server/src/plan/methods/outputCompensation';
import { applyRepairs } from '../../../server/src/plan/methods/repairs';
import { refitRouterRows, substitutes } from '../../../server/src/plan/methods/routerRefit';
import { Prng } from '../../support/prng';

const prng = new Prng(3);

/** Least-squares sums from explicit per-token contributions c[t][i] (vectors) and targets y[t]. */
function sumsOf(contributions: number[][][], targets: number[][]): CompensationSums {
  const n = contributions[0].length;
  const dot = (a: number[], b: number[]) => a.reduce((s, x, h) => s + x * b[h], 0);
  const gram = new Float64Array(n * n);
  const cross = new Float64Array(n);
  const routedTokens = new Array<number>(n).fill(0);
  contributions.forEach((c, t) => {
    for (let i = 0; i < n; i++) {
      if (c[i].some((x) => x !== 0)) routedTokens[i]++;
      cross[i] += dot(c[i], targets[t]);
      for (let j = 0; j < n; j++) gram[i * n + j] += dot(c[i], c[j]);
    }
  });
  return { gram, cross, routedTokens };
}

const vector = (h: number) => Array.from({ length: h }, () => prng.normal());

describe('output compensation', () => {
  it('recovers per-expert factors exactly when the full output is a scaled sum of the kept contributions', () => {
    const factors = [2, 0.5, 1.25];
    const contributions = Array.from({ length: 60 }, () => factors.map(() => vector(4)));
    const targets = contributions.map((c) => c[0].map((_, h) => c.reduce((s, ci, i) => s + factors[i] * ci[h], 0)));
    const { scales, granularity } = compensationScales(sumsOf(contributions, targets), { granularity: 'expert' });
    assert.equal(granularity, 'expert');
    scales.forEach((s, i) => assert.ok(Math.abs(s - factors[i]) < 1e-5, `expert ${i}: ${s} against ${factors[i]}`));
  });

  it('a dropped expert whose output copies a kept one is restored by one scale', () => {
    // Full layer: kept expert 0 and dropped expert 1 with the same output, gates 0.3 and 0.2; pruned: 0 alone at 0.3.
    const contributions = Array.from({ length: 20 }, () => [vector(3).map((x) => 0.3 * x)]);
    const targets = contributions.map(([c]) => c.map((x) => (x / 0.3) * 0.5));
    const { scales } = compensationScales(sumsOf(contributions, targets), { granularity: 'layer' });
    assert.ok(Math.abs(scales[0] - 0.5 / 0.3) < 1e-6, String(scales[0]));
  });

  it('falls back to one factor per layer when a kept expert saw too few tokens, and that factor is the least-squares one', () => {
    const contributions = Array.from({ length: 40 }, (_, t) => [vector(4), t < 3 ? vector(4) : [0, 0, 0, 0]]);
    const targets = contributions.map((c) => c[0].map((_, h) => 1.5 * (c[0][h] + c[1][h])));
    const { scales, granularity } = compensationScales(sumsOf(contributions, targets), { minTokens: 10 });
    assert.equal(granularity, 'layer');
    assert.ok(scales.every((s) => Math.abs(s - 1.5) < 1e-5), String(scales));
  });

  it('keeps the factor of an expert no token reaches at 1', () => {
    const contributions = Array.from({ length: 30 }, () => [vector(2), [0, 0]]);
    const targets = contributions.map((c) => c[0].map((x) => 3 * x));
    const { scales } = compensationScales(sumsOf(contributions, targets), { granularity: 'expert' });
    assert.ok(Math.abs(scales[0] - 3) < 1e-4);
    assert.ok(Math.abs(scales[1] - 1) < 1e-9);
  });

  it('solves a symmetric positive definite system', () => {
    const x = solveSymmetric([[4, 2, 0], [2, 5, 1], [0, 1, 3]], [4 * 1 + 2 * 2, 2 * 1 + 5 * 2 + 1 * 3, 2 + 3 * 3]);
    [1, 2, 3].forEach((v, i) => assert.ok(Math.abs(x[i] - v) < 1e-12));
    assert.throws(() => solveSymmetric([[1, 2], [2, 1]], [1, 1]), /not positive definite/);
  });
});

describe('router refit', () => {
  it('leaves the rows unchanged when nothing was removed', () => {
    const E = 3;
    const tokens = 50;
    const logits = Float64Array.from({ length: tokens * E }, () => prng.normal());
    const rows = refitRouterRows({ logits, tokens, numExperts: E, groups: [[0], [1], [2]], current: [[1, 0, 0], [0, 1, 0], [0, 0, 1]] });
    rows.forEach((row, i) => row.forEach((w, j) => assert.ok(Math.abs(w - (i === j ? 1 : 0)) < 1e-9)));
  });

  it('reproduces the full model\'s routing exactly when a group\'s log-sum-exp is linear in the logits', () => {
    // Expert 2 always scores expert 0's logit + c and is dropped into expert 0; expert 3's logit is the
    // constant 1, so log(e^l0 + e^(l0 + c)) = l0 + log(1 + e^c) · l3 is in the span of the logits.
    const E = 4;
    const c = 0.7;
    const tokens = 80;
    const logits = new Float64Array(tokens * E);
    for (let t = 0; t < tokens; t++) {
      logits[t * E] = prng.normal();
      logits[t * E + 1] = prng.normal();
      logits[t * E + 2] = logits[t * E] + c;
      logits[t * E + 3] = 1;
    }
    const groups = [[0, 2], [1], [3]];
    const rows = refitRouterRows({ logits, tokens, numExperts: E, groups, current: [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]], ridge: 1e-12 });
    for (let t = 0; t < tokens; t++) {
      const l = Array.from(logits.subarray(t * E, (t + 1) * E));
      const full = l.map(Math.exp);
      const fullTotal = full.reduce((a, b) => a + b, 0);
      const pruned = rows.map((row) => Math.exp(row.reduce((s, w, j) => s + w * l[j], 0)));
      const prunedTotal = pruned.reduce((a, b) => a + b, 0);
      groups.forEach((group, i) => {
        const mass = group.reduce((s, j) => s + full[j], 0) / fullTotal;
        assert.ok(Math.abs(pruned[i] / prunedTotal - mass) < 1e-6, `token ${t} row ${i}`);
      });
    }
  });

  it('assigns each removed expert to the row that merges it, else to the nearest kept output', () => {
    const merge = [[0.5, 0.5, 0, 0, 0], [0, 0, 1, 0, 0]];
    const distance = (removed: number, row: number) => (removed === 3 ? [5, 1][row] : [1, 2][row]);
    assert.deepEqual(substitutes(5, merge, distance), [[0, 1, 4], [2, 3]]);
  });

  it('gives a kept expert to the row that merges most of it, so a small coefficient elsewhere leaves no row empty', () => {
    // Row 0 names expert 1 with −0.01 (as EEP's merge mutations leave), row 1 is expert 1 itself.
    const merge = [[1, -0.01, 0.2, 0], [0, 1, 0.05, 0]];
    const distance = (_removed: number, row: number) => [3, 1][row];
    assert.deepEqual(substitutes(4, merge, distance), [[0, 2], [1, 3]]);
  });

  it('keeps a row with an empty group as it was, and refits the others finitely', () => {
    const E = 3;
    const tokens = 30;
    const logits = Float64Array.from({ length: tokens * E }, () => prng.normal());
    const current = [[1, 0, 0], [0, 0.5, 0.5]];
    const rows = refitRouterRows({ logits, tokens, numExperts: E, groups: [[0, 1, 2], []], current });
    assert.deepEqual(rows[1], [0, 0.5, 0.5]);
    assert.ok(rows[0].every(Number.isFinite));
  });

  it('applies the refit before compensation, and compensation to the plan\'s final routing', async () => {
    const seen: unknown[] = [];
    const source = {
      routerLogits: () => ({ logits: Float64Array.from({ length: 40 * 3 }, () => prng.normal()), tokens: 40, numExperts: 3 }),
      outputDistance: () => 1,
      compensationSums: async (plan: unknown) => {
        seen.push(plan);
        return { gram: Float64Array.from([2, 0, 0, 2]), cross: Float64Array.from([4, 1]), routedTokens: [50, 50] };
      },
    };
    const { layers, record } = await applyRepairs([{ layer: 1, keptExperts: [0, 2] }], ['outputCompensation', 'routerRefit'], source);
    assert.deepEqual(record.repairs, ['routerRefit', 'outputCompensation']);
    assert.deepEqual(record.compensation, { 1: 'expert' });
    assert.ok((seen[0] as { routerMap?: unknown }).routerMap, 'compensation saw the refit router');
    assert.ok(Math.abs(layers[0].outputScale![0] - 2) < 1e-5 && Math.abs(layers[0].outputScale![1] - 0.5) < 1e-5);
    assert.deepEqual(layers[0].mergeMatrix, [[1, 0, 0], [0, 0, 1]]);
  });
});
