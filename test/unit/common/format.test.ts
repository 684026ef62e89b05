import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatBytes, formatExpertCounts } from '../../../common/format';

test('expert counts read as one number, or as a range when layers differ', () => {
  assert.equal(formatExpertCounts([8, 8, 8]), '8 experts');
  assert.equal(formatExpertCounts([4, 8, 6]), '4–8 experts');
});

test('byte sizes pick their unit', () => {
  assert.equal(formatBytes(512), '512 B');
  assert.equal(formatBytes(1536), '1.5 KiB');
  assert.equal(formatBytes(18_648_296), '17.8 MiB');
  assert.equal(formatBytes(7.47 * 1024 ** 3), '7.47 GiB');
});
