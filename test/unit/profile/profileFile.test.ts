import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import {
  buildProfile, defaultProfilePath, fileSha256, formatProfile, loadCurrentProfile, loadProfile, parseProfile,
  profileCacheKey, ProfileFileError, saveProfile, type ProfileInputs,
} from '../../../server/src/profile/profileFile';
import { Profiler } from '../../../server/src/profile/profiler';
import type { ProfileFile } from '../../../server/src/profile/types';
import { example, sequence } from './fixture';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-profile-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const INPUTS: ProfileInputs = {
  model: { folder: 'models/tiny-mixtral', architecture: 'MixtralForCausalLM', numLayers: 3, numExperts: 4, topK: 2, fingerprint: 'f00d' },
  dataset: { file: 'data/code.jsonl', format: 'jsonl', field: { kind: 'field', field: 'text' }, rows: 2, contentSha256: 'abc', malformedRows: 1, firstMalformedLines: [3] },
  settings: { sequenceLength: 512, maxRows: null, tokenRecords: 4 },
};

function profile(sequences = 2): ProfileFile {
  const profiler = new Profiler({ tokenRecords: 4 });
  profiler.addSequence(sequence(0, 5, 0), example());
  if (sequences > 1) profiler.addSequence(sequence(0, 3, 1), example(0, 3));
  return buildProfile(INPUTS, profiler.finalize(), new Date('2025-01-02T03:04:05Z'));
}

/** What a saved profile reads back as: every non-integer rounded to 6 significant digits. */
function rounded<T>(value: T): T {
  return JSON.parse(JSON.stringify(value, (_key, item) => (typeof item === 'number' && !Number.isInteger(item) ? Number(item.toPrecision(6)) : item)));
}

describe('profile file', () => {
  it('round-trips through save and load, numbers rounded to 6 significant digits', async () => {
    const file = path.join(dir, 'nested', 'round.json');
    const original = profile();
    await saveProfile(file, original);
    const loaded = await loadProfile(file);
    assert.deepEqual(loaded, rounded(original));
    assert.equal(loaded.dataset.tokens, 8);
    assert.equal(loaded.cacheKey, profileCacheKey(INPUTS));
  });

  it('writes JSON a person can read: matrices one row per line, one line per token', () => {
    const text = formatProfile(profile(1));
    assert.match(text, /^ {2}"schema": "moe-studio\.profile",$/m);
    assert.match(text, /^ {6}"tokenCounts": \[3, 3, 3, 1\],$/m);
    assert.match(text, /^ {6}"coActivation": \[\n {8}\[3, 2, 1, 0\],\n {8}\[2, 3, 1, 0\],/m);
    assert.match(text, /^ {6}"meanGate": \[0\.685185, 0\.5, 0\.259259, 0\.666667\],$/m);
    assert.match(text, /^ {4}\{"row": 0, "start": 0, "end": 2, "token": 100, "experts": \[\[0, 1\], \[0, 1\], \[0, 1\]\], "gates": \[\[0\.666667, 0\.333333\], \[0\.5, 0\.5\], \[0\.666667, 0\.333333\]\]\},$/m);
    assert.doesNotThrow(() => JSON.parse(text));
  });

  it('keys the cache on the model, the data, the text field and the settings', () => {
    const key = profileCacheKey(INPUTS);
    assert.match(key, /^[0-9a-f]{64}$/);
    assert.equal(profileCacheKey(structuredClone(INPUTS)), key);
    assert.notEqual(profileCacheKey({ ...INPUTS, model: { ...INPUTS.model, fingerprint: 'beef' } }), key);
    assert.notEqual(profileCacheKey({ ...INPUTS, dataset: { ...INPUTS.dataset, contentSha256: 'abd' } }), key);
    assert.notEqual(profileCacheKey({ ...INPUTS, dataset: { ...INPUTS.dataset, field: { kind: 'field', field: 'content' } } }), key);
    assert.notEqual(profileCacheKey({ ...INPUTS, settings: { ...INPUTS.settings, maxRows: 100 } }), key);
  });

  it('reuses a saved profile only while its cache key matches', async () => {
    const file = path.join(dir, 'current.json');
    assert.equal(await loadCurrentProfile(file, 'x'), undefined);
    await saveProfile(file, profile());
    assert.ok(await loadCurrentProfile(file, profileCacheKey(INPUTS)));
    assert.equal(await loadCurrentProfile(file, 'stale'), undefined);
    fs.writeFileSync(file, '{"schema": "moe-studio.profile", "vers');
    assert.equal(await loadCurrentProfile(file, profileCacheKey(INPUTS)), undefined);
  });

  it('puts profiles under .moe-studio/profiles named after the dataset and the model', () => {
    assert.equal(defaultProfilePath('/ws', '/ws/data/code valid.jsonl', '/ws/models/tiny-mixtral/'), path.join('/ws', '.moe-studio', 'profiles', 'code_valid.jsonl.tiny-mixtral.json'));
  });

  it('hashes file contents', async () => {
    const file = path.join(dir, 'abc.txt');
    fs.writeFileSync(file, 'abc');
    assert.equal(await fileSha256(file), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });
});

describe('atomic save', () => {
  it('leaves the previous profile intact and no temporary file when saving fails midway', async () => {
    const file = path.join(dir, 'atomic', 'p.json');
    await saveProfile(file, profile());
    const before = fs.readFileSync(file, 'utf8');
    const broken = profile();
    // Thousands of token lines are written before the serialiser reaches the broken one.
    const records = Array.from({ length: 5000 }, (_, i) => ({ ...broken.tokens[0], row: i }));
    Object.defineProperty(records[4999], 'token', { enumerable: true, get: () => { throw new Error('disk on fire'); } });
    broken.tokens = records;
    await assert.rejects(saveProfile(file, broken), /disk on fire/);
    assert.equal(fs.readFileSync(file, 'utf8'), before);
    assert.deepEqual(fs.readdirSync(path.dirname(file)), ['p.json']);
  });

  it('replaces the previous profile in one step when saving succeeds', async () => {
    const file = path.join(dir, 'atomic2', 'p.json');
    await saveProfile(file, profile());
    const next = { ...profile(), createdAt: '2026-01-01T00:00:00.000Z' };
    await saveProfile(file, next);
    assert.equal((await loadProfile(file)).createdAt, '2026-01-01T00:00:00.000Z');
    assert.deepEqual(fs.readdirSync(path.dirname(file)), ['p.json']);
  });
});

describe('loading validates', () => {
  const text = formatProfile(profile());
  const edited = (edit: (value: Record<string, any>) => void) => {
    const value = JSON.parse(text);
    edit(value);
    return JSON.stringify(value);
  };
  const cases: [string, string, RegExp][] = [
    ['an empty file', '', /p\.json is not valid JSON: the file is empty/],
    ['a truncated file', text.slice(0, text.length / 2), /p\.json is not valid JSON: .*truncated or hand-edited/],
    ['another JSON document', '{"name": "x"}', /is not a MoE Studio profile \("schema" should be "moe-studio\.profile", found undefined\)/],
    ['a newer version', edited((v) => (v.version = 2)), /version 2, written by a newer MoE Studio; this one reads version 1/],
    ['a missing model field', edited((v) => delete v.model.topK), /p\.json: model\.topK should be a number, found nothing/],
    ['a short expert list', edited((v) => v.layers[1].usageShare.pop()), /layers\[1\]\.usageShare has 3 entries, expected 4 \(numExperts\)/],
    ['a ragged matrix', edited((v) => v.layers[0].coActivation[2].push(1)), /layers\[0\]\.coActivation\[2\] has 5 entries, expected 4/],
    ['a string for a number', edited((v) => (v.layers[2].reap[3] = 'high')), /layers\[2\]\.reap\[3\] should be a number, found string "high"/],
    ['layers out of order', edited((v) => ([v.layers[0], v.layers[1]] = [v.layers[1], v.layers[0]])), /layers\[1\]\.layer should be greater than the layer before \(1\)/],
    ['a wrong curve length', edited((v) => v.layers[0].singleExpertShare.pop()), /singleExpertShare has 40 entries, expected 41 \(one per gating threshold\)/],
    ['an unknown field kind', edited((v) => (v.dataset.field = { kind: 'column' })), /dataset\.field\.kind should be "string", "field", "pair" or "chat", found "column"/],
    ['a token missing a layer', edited((v) => v.tokens[2].experts.pop()), /tokens\[2\]\.experts has 2 entries, expected 3 \(one per layer\)/],
    ['a negative count', edited((v) => (v.dataset.rows = -1)), /dataset\.rows should be an integer ≥ 0, found -1/],
  ];
  for (const [what, content, message] of cases) {
    it(`rejects ${what}`, () => {
      assert.throws(() => parseProfile(content, 'p.json'), (error: unknown) => {
        assert.ok(error instanceof ProfileFileError, `not a ProfileFileError: ${error}`);
        assert.match(error.message, message);
        return true;
      });
    });
  }
});
