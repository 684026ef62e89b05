import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ByteBudgetCache } from '../../../server/src/runtime/byteBudgetCache';

describe('ByteBudgetCache', () => {
  it('drops the least recently used entries beyond its budget, counting a read as a use', () => {
    const cache = new ByteBudgetCache<Float32Array>(3 * 8, (value) => value.byteLength); // three 2-float entries
    for (const key of ['a', 'b', 'c']) cache.set(key, new Float32Array(2));
    assert.ok(cache.get('a'), 'a is read, so b is now the oldest');
    cache.set('d', new Float32Array(2));
    assert.equal(cache.get('b'), undefined);
    for (const key of ['a', 'c', 'd']) assert.ok(cache.get(key), `${key} is kept`);
  });

  it('keeps the first value under a key and never one larger than the whole budget', () => {
    const cache = new ByteBudgetCache<Float32Array>(16, (value) => value.byteLength);
    const first = Float32Array.of(1);
    cache.set('a', first);
    cache.set('a', Float32Array.of(2));
    assert.equal(cache.get('a'), first);
    cache.set('big', new Float32Array(5));
    assert.equal(cache.get('big'), undefined);
    assert.equal(cache.get('a'), first, 'refusing the large value evicted nothing');
  });
});
