import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { topKAgreement } from '../../../bench/precisionAgreement';

describe('int8 against fp32: top-k agreement', () => {
  it('counts slots whose expert the reference also picked for that token, in any order', () => {
    // Layer 0, k = 2: token 0 swaps order (2 agree), token 1 changes one expert (1 agrees).
    // Layer 1, k = 1: token 0 agrees, token 1 differs. Total 4 of 6.
    const reference = [Int32Array.of(3, 5, 1, 2), Int32Array.of(0, 7)];
    const other = [Int32Array.of(5, 3, 1, 6), Int32Array.of(0, 4)];
    assert.deepEqual(topKAgreement(reference, other, [2, 1]), { agreeing: 4, slots: 6 });
    assert.deepEqual(topKAgreement(reference, reference, [2, 1]), { agreeing: 6, slots: 6 });
  });

  it('refuses captures of different shapes', () => {
    assert.throws(() => topKAgreement([Int32Array.of(1, 2)], [Int32Array.of(1)], [2]), /2 against 1 slots/);
    assert.throws(() => topKAgreement([Int32Array.of(1)], [], [1]), /1 against 0 MoE layers/);
  });
});
