import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseArgs } from '../../../server/src/cli';

describe('CLI arguments', () => {
  it('separates positionals, valued options, inline values and flags', () => {
    const { positional, options } = parseArgs(['profile', '--model', 'demo/model', '--out=x.json', 'data.jsonl', '--json']);
    assert.deepEqual(positional, ['profile', 'data.jsonl']);
    assert.equal(options.get('model'), 'demo/model');
    assert.equal(options.get('out'), 'x.json');
    assert.equal(options.get('json'), true);
  });
});
