import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { attentionBias, BatchTablesCache, packedLayout, ropeTables } from '../../../server/src/runtime/positionTables';

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

  it('keeps the tables of recent batch shapes, equal to freshly built ones, within its byte budget', () => {
    // One entry of lengths [3, 4] padded to 4, head dim 4: token slots (7) and grid rows (8) as int64,
    // cos and sin (4 x 4) and the bias (2 x 4 x 4) as float32.
    const entryBytes = 7 * 8 + 8 * 8 + 2 * 4 * 4 * 4 + 2 * 4 * 4 * 4;
    const cache = new BatchTablesCache(4, 10000, entryBytes + entryBytes / 2);
    const first = cache.get([3, 4], 4);
    assert.deepEqual(first.bias, attentionBias([3, 4], 4));
    assert.deepEqual(first.layout.gridRows, packedLayout([3, 4], 4).gridRows);
    assert.deepEqual(first.cos, ropeTables(4, 10000, 4).cos);
    assert.equal(cache.get([3, 4], 4), first, 'the same shape is served from the cache');
    assert.notEqual(cache.get([4, 3], 4), first, 'another shape is another entry');
    // The budget holds one entry of this size, so the second shape pushed the first one out.
    assert.notEqual(cache.get([3, 4], 4), first);
  });
});
