// "Generate pruning plan"'s choices as data (the quick picks show them in this order, so the first
// is what Enter picks): issue 17's wizard items and the global budget and repairs of issue 16.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { countChoices, GATING_TARGETS, METHODS, REPAIR_CHOICES } from '../../../client/src/plans/wizardChoices';

test('the method list starts on REAP (fast, good quality); EEP, the slowest, is not first', () => {
  assert.equal(METHODS[0].method, 'reap');
  const eep = METHODS.findIndex((m) => m.method === 'eep');
  assert.ok(eep > METHODS.findIndex((m) => m.method === 'frequency'));
  assert.match(METHODS[eep].detail, /slowest/);
  assert.equal(new Set(METHODS.map((m) => m.label)).size, METHODS.length, 'two methods share a label');
  assert.deepEqual(GATING_TARGETS.map((g) => g.singleExpertShare ?? g.maxLossIncrease), [0.5, 0.7, 0.9, 0.01, 0.02, 0.05]);
});

test("only UNCURL's counts warn about UNCURL's threshold (4× below 64 experts, 2× from 64)", () => {
  for (const method of ['reap', 'frequency', 'naee', 'eep'] as const) {
    assert.deepEqual(countChoices(method, 8, 4, 2).filter((c) => c.detail?.includes('UNCURL')), [], method);
  }
  const uncurl8 = countChoices('uncurl', 8, 4, 2).filter((c) => c.count !== undefined && c.detail?.includes("UNCURL's threshold (~4×)")).map((c) => c.count);
  assert.deepEqual(uncurl8, [1], '8/1 = 8× is past 4×; 8/2 = 4× is not');
  const uncurl64 = countChoices('uncurl', 64, 2, 8).filter((c) => c.detail?.includes("UNCURL's threshold (~2×)")).map((c) => c.count);
  assert.deepEqual(uncurl64, Array.from({ length: 31 }, (_, i) => 31 - i), 'below 32 of 64 experts');
});

test('the count step: every per-layer count from E − 1 down, then global budgets of all experts', () => {
  const choices = countChoices('reap', 8, 4, 2);
  assert.deepEqual(choices.filter((c) => c.count !== undefined).map((c) => c.count), [7, 6, 5, 4, 3, 2, 1]);
  assert.equal(choices[0].label, 'Keep 7 of 8 experts per layer');
  assert.equal(choices[0].name, 'keep7');
  const budgets = choices.filter((c) => c.keepShare !== undefined);
  assert.deepEqual(budgets.map((c) => [c.keepShare, c.description, c.name]), [
    [0.75, '24 of 32 experts in 4 layers', 'share75'],
    [0.5, '16 of 32 experts in 4 layers', 'share50'],
    [0.25, '8 of 32 experts in 4 layers', 'share25'],
  ]);
  for (const budget of budgets) assert.equal(budget.count, undefined, 'a budget sends no per-layer count');
  // Top-4 routing over 8 experts: a quarter (2 per layer on average) is below every layer's minimum of 4.
  assert.deepEqual(countChoices('reap', 8, 4, 4).filter((c) => c.keepShare !== undefined).map((c) => c.keepShare), [0.75, 0.5]);
});

test('repairs: none first (Enter keeps the plan as the method made it), then compensation, then refit with it', () => {
  assert.deepEqual(REPAIR_CHOICES.map((r) => r.repairs), [[], ['outputCompensation'], ['routerRefit', 'outputCompensation']]);
});
