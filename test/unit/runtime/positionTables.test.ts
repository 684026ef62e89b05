import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { attentionBias, packedLayout } from '../../../server/src/runtime/positionTables';

describe('batch layout', () => {
  it('packs real tokens sequence after sequence and maps them to and from the padded grid', () => {
    // Lengths 2 and 3, padded to 3: grid places 0 1 [2] | 3 4 5, where place 2 is padding.
    const { offsets, tokenSlots, gridRows } = packedLayout([2, 3], 3);
    assert.deepEqual(offsets, [0, 2]);
    assert.deepEqual([...tokenSlots].map(Number), [0, 1, 3, 4, 5]);
    // The padding place reads its own sequence's first token; every other place reads its token.
    assert.deepEqual([...gridRows].map(Number), [0, 1, 0, 2, 3, 4]);
    // Round trip: a real token's grid place reads that token back.
    tokenSlots.forEach((slot, row) => assert.equal(Number(gridRows[Number(slot)]), row));
  });

  it('hides padding keys and future keys from every query', () => {
    const bias = attentionBias([2, 3], 3);
    const row = (b: number, q: number) => [...bias.subarray((b * 3 + q) * 3, (b * 3 + q + 1) * 3)];
    assert.deepEqual(row(0, 0), [0, -Infinity, -Infinity]);
    assert.deepEqual(row(0, 2), [0, 0, -Infinity]); // a padding query still sees only real keys
    assert.deepEqual(row(1, 1), [0, 0, -Infinity]);
    assert.deepEqual(row(1, 2), [0, 0, 0]);
  });
});
