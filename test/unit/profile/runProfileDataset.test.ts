import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadTokenizer } from '../../../server/src/checkpoint';
import { CancelledError } from '../../../server/src/errors';
import { compareProfiles, jensenShannon } from '../../../server/src/profile';
import { modelIdentity, profileDataset, profileProgressMessage, RuntimePool, streamedSecondsLeft, type ProfileProgress, type ProfileRunSettings } from '../../../server/src/profile/run';
import { planMemory } from '../../../server/src/runtime/memoryBudget';
import { ModelRuntime } from '../../../server/src/runtime';
import { Prng } from '../../support/prng';
import { writeRandomCheckpoint } from '../../support/randomCheckpoint';

const repoRoot = path.resolve(__dirname, '../../..');
const WORDS = ['the', 'expert', 'router', 'sends', 'tokens', 'to', 'two', 'of', 'eight', 'layers', 'def', 'x', '=', '(', ')', '42', '+', 'café', '\n'];
const TEXT = { kind: 'field', field: 'text' } as const;

function sentences(count: number, seed: number, maxWords = 30): string[] {
  const prng = new Prng(seed);
  return Array.from({ length: count }, () => Array.from({ length: 2 + Math.floor(prng.next() * maxWords) }, () => WORDS[Math.floor(prng.next() * WORDS.length)]).join(' '));
}

function jsonl(texts: string[]): string {
  return texts.map((text) => JSON.stringify({ id: 1, text })).join('\n') + '\n';
}

describe('profileDataset', () => {
  let dir: string;
  let model: string;
  const pool = new RuntimePool();
  const settings: Partial<ProfileRunSettings> = { threads: 1, sequenceLength: 64, maxRows: null, tokenRecords: 100 };

  const run = (datasetFile: string, extra: Partial<Parameters<typeof profileDataset>[0]> = {}) =>
    profileDataset({ datasetFile, modelFolder: model, field: TEXT, workspaceFolder: dir, settings, runtimes: pool, ...extra });

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-profile-run-'));
    model = path.join(dir, 'tiny-mixtral');
    await writeRandomCheckpoint(model, { architecture: 'MixtralForCausalLM', seed: 5, vocabSize: 300, hiddenSize: 32, numLayers: 2, numHeads: 4, numKvHeads: 2, numExperts: 4, topK: 2, expertIntermediateSize: 16 });
  });

  after(async () => {
    await pool.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('counts exactly the experts the runtime chose for the same tokens, truncating long rows', async () => {
    const texts = sentences(40, 1, 60);
    const file = path.join(dir, 'counts.jsonl');
    fs.writeFileSync(file, jsonl(texts));
    const result = await run(file);
    assert.equal(result.reused, false);
    assert.ok(fs.existsSync(result.profilePath));

    // Independently: tokenise, truncate, run the model, count the chosen experts.
    const tokenizer = await loadTokenizer(model);
    const sequences = texts.map((text) => Int32Array.from(tokenizer.encode(text).slice(0, 64)));
    const truncated = texts.filter((text) => tokenizer.encode(text).length > 64).length;
    assert.ok(truncated > 0, 'the fixture has rows longer than the sequence length');
    const runtime = await ModelRuntime.open(model, { threads: 1 });
    try {
      const { sequences: captured } = await runtime.forward({ sequences, outputs: { moe: true } });
      const expected = result.profile.layers.map((layer) => {
        const counts = new Array(layer.numExperts).fill(0);
        for (const sequence of captured) {
          for (const expert of sequence.moe!.find((capture) => capture.layer === layer.layer)!.selectedExperts) counts[expert]++;
        }
        return counts;
      });
      assert.deepEqual(result.profile.layers.map((layer) => layer.tokenCounts), expected);
    } finally {
      await runtime.close();
    }
    const tokens = sequences.reduce((sum, sequence) => sum + sequence.length, 0);
    assert.equal(result.profile.dataset.tokens, tokens);
    assert.equal(result.profile.dataset.rows, 40);
    assert.equal(result.profile.tokens.length, 100);
    assert.deepEqual(result.profile.tokens[0], { ...result.profile.tokens[0], row: 0, token: sequences[0][0] });
    assert.ok(result.notes.includes(`${truncated} row${truncated === 1 ? '' : 's'} truncated to 64 tokens.`), result.notes.join(' | '));
  });

  it('under a budget that streams every layer: the same statistics from one work set, progress by layer, the decision said once', async () => {
    const file = path.join(dir, 'streamed.jsonl');
    fs.writeFileSync(file, jsonl(sentences(30, 4, 40)));
    const resident = await run(file, { outFile: path.join(dir, 'resident.json'), force: true });
    const { spec } = await modelIdentity(model);
    const { tensors: _names, ...shape } = spec;
    const probe = planMemory(shape, { budgetBytes: 1e15 });
    const lines: string[] = [];
    const streamedPool = new RuntimePool();
    // The floor: one layer streaming, the fixed parts, one batch's work and the minimum for hidden states.
    streamedPool.configure({ memoryBudget: probe.streamingFloorBytes, report: (line) => lines.push(line) });
    try {
      const progress: ProfileProgress[] = [];
      const streamed = await run(file, { outFile: path.join(dir, 'streamed.json'), force: true, runtimes: streamedPool, onProgress: (p) => progress.push(p) });
      assert.deepEqual(streamed.profile.layers, resident.profile.layers);
      assert.equal(streamed.profile.dataset.tokens, resident.profile.dataset.tokens);
      assert.equal(lines.length, 1);
      assert.match(lines[0], /^tiny-mixtral: needs [\d.]+ MB as fp32; budget [\d.]+ MB: streaming 2 layers and the head, about \d+ s of weight loading per pass$/);
      // A small first batch (token records), then every other row in one work set: passes 1 and 2, two layers each.
      const layered = progress.filter((p) => p.pass);
      assert.deepEqual([...new Set(layered.map((p) => p.pass!.number))], [1, 2]);
      assert.ok(layered.every((p) => p.pass!.layers === 2 && p.secondsLeft >= 0));
      assert.match(profileProgressMessage(layered[0]), /tokens · [\d,]+ tok\/s · [\d,]+ s left · pass 1, layer [12] of 2$/);
    } finally {
      await streamedPool.close();
    }
  });

  it('a streamed profile\'s time left follows its estimate until two work sets are in, then the speed so far', () => {
    // The estimate leaves 40 s; the current pass has 12 s left; the loading-heavy extrapolation says 150 s.
    assert.equal(streamedSecondsLeft({ estimateLeft: 40, passLeft: 12, extrapolated: 150 }), 40);
    // The pass alone needs longer than the estimate leaves: at least the pass.
    assert.equal(streamedSecondsLeft({ estimateLeft: 5, passLeft: 12, extrapolated: 150 }), 12);
    // The estimate has run out (it was low), or there is none (after two work sets): the extrapolation.
    assert.equal(streamedSecondsLeft({ estimateLeft: -3, passLeft: 12, extrapolated: 150 }), 150);
    assert.equal(streamedSecondsLeft({ passLeft: 12, extrapolated: 150 }), 150);
  });

  it('reuses a current profile without running the model, and recomputes with force', async () => {
    const file = path.join(dir, 'reuse.jsonl');
    fs.writeFileSync(file, jsonl(sentences(5, 2)));
    const first = await run(file);
    const fresh = new RuntimePool();
    const second = await run(file, { runtimes: fresh });
    assert.equal(second.reused, true);
    assert.equal(fresh.opened, 0);
    assert.equal(second.profile.cacheKey, first.profile.cacheKey);
    const forced = await run(file, { force: true });
    assert.equal(forced.reused, false);
    const other = await run(file, { settings: { ...settings, sequenceLength: 8 } });
    assert.equal(other.reused, false, 'different settings invalidate the saved profile');
  });

  it('cancelled mid-run: throws CancelledError, keeps the previous profile byte for byte, leaves no temporary file', async () => {
    const file = path.join(dir, 'cancel.jsonl');
    fs.writeFileSync(file, jsonl(sentences(400, 3)));
    const { profilePath } = await run(file, { settings: { ...settings, maxRows: 3 } });
    const previous = fs.readFileSync(profilePath);
    const controller = new AbortController();
    let progressCalls = 0;
    await assert.rejects(
      run(file, { signal: controller.signal, onProgress: () => (progressCalls++, controller.abort()) }),
      (error: unknown) => error instanceof CancelledError,
    );
    assert.equal(progressCalls, 1);
    assert.deepEqual(fs.readFileSync(profilePath), previous);
    assert.deepEqual(fs.readdirSync(path.dirname(profilePath)).filter((name) => name.endsWith('.tmp')), []);
  });

  it('skips malformed rows and reports their lines, or stops at the first', async () => {
    const file = path.join(dir, 'malformed.jsonl');
    fs.writeFileSync(file, '{"text": "good row one"}\n{"text": \n\n{"title": "no text"}\n{"text": "good row two"}\n');
    const skipped = await run(file);
    assert.equal(skipped.profile.dataset.rows, 2);
    assert.equal(skipped.profile.dataset.malformedRows, 2);
    assert.deepEqual(skipped.profile.dataset.firstMalformedLines, [2, 4]);
    assert.ok(skipped.notes.some((note) => /2 malformed rows skipped \(first at lines 2, 4\)/.test(note)), skipped.notes.join(' | '));
    await assert.rejects(run(file, { settings: { ...settings, onMalformed: 'stop' }, force: true }), /line 2: invalid JSON.*onMalformedRows/);
  });

  it('names the fields that exist when none has the text field', async () => {
    const file = path.join(dir, 'fields.jsonl');
    fs.writeFileSync(file, '{"prompt": "a", "answer": "b"}\n{"prompt": "c", "answer": "d"}\n');
    await assert.rejects(run(file), /no row has text.*no field "text"; its fields are "prompt", "answer"/);
  });

  it('refuses an empty dataset and a binary file with clear errors', async () => {
    const empty = path.join(dir, 'empty.jsonl');
    fs.writeFileSync(empty, '\n\n');
    await assert.rejects(run(empty), /empty\.jsonl has no rows with text to profile/);
    const binary = path.join(dir, 'binary.txt');
    fs.writeFileSync(binary, Buffer.from([0x41, 0xff, 0xfe, 0x00, 0x0a, 0xc3, 0x28]));
    await assert.rejects(run(binary, { field: { kind: 'string' } }), /binary\.txt is not UTF-8 text.*binary file/);
  });

  it('fails when the dataset changes during profiling, and saves nothing', async () => {
    const file = path.join(dir, 'changing.jsonl');
    fs.writeFileSync(file, jsonl(sentences(200, 4)));
    let appended = false;
    await assert.rejects(
      run(file, {
        onProgress: () => {
          if (!appended) fs.appendFileSync(file, jsonl(['one more row']));
          appended = true;
        },
      }),
      /changing\.jsonl changed during profiling, run again/,
    );
    assert.equal(fs.existsSync(path.join(dir, '.moe-studio', 'profiles', 'changing.jsonl.tiny-mixtral.json')), false);
  });
});

describe('profiling the demo model: experts specialise by domain', () => {
  const pool = new RuntimePool();
  let workspace: string;
  before(() => {
    workspace = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-profile-demo-'));
  });
  after(async () => {
    await pool.close();
    fs.rmSync(workspace, { recursive: true, force: true });
  });

  it('code and arithmetic use clearly different experts; code and prose closer ones, as train.py reported', async () => {
    const profile = async (domain: string) =>
      (await profileDataset({ datasetFile: path.join(repoRoot, `demo/data/${domain}.valid.jsonl`), modelFolder: path.join(repoRoot, 'demo/model'), field: TEXT, workspaceFolder: workspace, settings: { maxRows: 30, threads: 1 }, runtimes: pool })).profile;
    const [code, arithmetic, prose] = [await profile('code'), await profile('arithmetic'), await profile('prose')];
    // The same divergences over all validation rows, from the usage train.py reported
    // (demo/data/validation_report.json): 30 rows per domain must show the same picture.
    const report = JSON.parse(fs.readFileSync(path.join(repoRoot, 'demo/data/validation_report.json'), 'utf8')) as { expert_usage: Record<string, number[][]> };
    const reported = (a: string, b: string) => report.expert_usage[a].map((usage, layer) => jensenShannon(usage, report.expert_usage[b][layer]));
    const apart = compareProfiles(code, arithmetic).layers.map((layer) => layer.jensenShannon);
    const alike = compareProfiles(code, prose).layers.map((layer) => layer.jensenShannon);
    assert.equal(apart.length, 4);
    reported('code', 'arithmetic').forEach((expected, layer) => {
      assert.ok(expected > 0.3, `the report itself shows code and arithmetic apart in layer ${layer} (${expected})`);
      assert.ok(Math.abs(apart[layer] - expected) < 0.15, `JS(code, arithmetic) per layer: ${apart.join(', ')} vs reported ${reported('code', 'arithmetic').join(', ')}`);
    });
    reported('code', 'prose').forEach((expected, layer) => {
      assert.ok(Math.abs(alike[layer] - expected) < 0.1, `JS(code, prose) per layer: ${alike.join(', ')} vs reported ${reported('code', 'prose').join(', ')}`);
      assert.ok(alike[layer] < apart[layer] / 2, `layer ${layer}: code is much nearer prose (${alike[layer]}) than arithmetic (${apart[layer]})`);
    });
  });
});
