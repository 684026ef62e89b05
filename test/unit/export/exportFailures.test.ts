import assert from 'node:assert/strict';
import { mkdir, mkdtemp, open, readdir, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { CheckpointLoad } from '../../../server/src/checkpoint';
import { ExportError, exportHuggingFace, type ExportOptions, type ExportPlan } from '../../../server/src/export';
import { failingFileSystem, planFor, snapshot, writeAndLoad } from './exportFixtures';

let root: string;
let source: CheckpointLoad;
let plan: ExportPlan;
/** The folder exports go into; everything in it is compared before and after each failure. */
let parent: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'moe-export-fail-'));
  source = await writeAndLoad(join(root, 'source'), { architecture: 'MixtralForCausalLM', dtype: 'BF16', shards: 2 });
  plan = planFor(source.spec, () => ({ keptExperts: [0, 2, 4, 6], mergeMatrix: [[0.5, 0.5, 0, 0, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0, 1, 0]] }));
  parent = join(root, 'exports');
  await mkdir(parent);
  await writeFile(join(parent, 'unrelated.txt'), 'left alone\n');
});
after(async () => {
  await source.weights.close();
  await rm(root, { recursive: true, force: true });
});

/** Runs an export that must fail with `code`, and checks that neither the parent folder nor the source changed. */
async function assertFailsLeavingNothing(code: string, run: () => Promise<unknown>, message?: RegExp): Promise<ExportError> {
  const parentBefore = await snapshot(parent);
  const sourceBefore = await snapshot(source.folder);
  let caught: unknown;
  await assert.rejects(run(), (error) => {
    caught = error;
    return true;
  });
  assert.ok(caught instanceof ExportError, String(caught));
  assert.equal(caught.code, code, caught.message);
  if (message) assert.match(caught.message, message);
  assert.deepEqual(await snapshot(parent), parentBefore, 'the target folder changed');
  assert.deepEqual(await snapshot(source.folder), sourceBefore, 'the source changed');
  return caught;
}

const exportTo = (name: string, options: ExportOptions = {}) => exportHuggingFace(source, plan, join(parent, name), { shardBytes: 40_000, ...options });

describe('export failures leave the disk as it was', () => {
  it('refuses an existing target, and replaces it atomically only with overwrite', async () => {
    await mkdir(join(parent, 'existing'));
    await writeFile(join(parent, 'existing', 'keep.txt'), 'mine\n');
    await assertFailsLeavingNothing('targetExists', () => exportTo('existing'), /already exists/);

    await exportTo('existing', { overwrite: true });
    const entries = await readdir(join(parent, 'existing'));
    assert.ok(entries.includes('config.json') && !entries.includes('keep.txt'));
    assert.deepEqual((await readdir(parent)).sort(), ['existing', 'unrelated.txt'], 'no partial or replaced folder left beside it');
    await rm(join(parent, 'existing'), { recursive: true });
  });

  it('refuses to export into the source folder', async () => {
    await assertFailsLeavingNothing('invalidTarget', () => exportHuggingFace(source, plan, source.folder, { overwrite: true }), /holds the source model/);
  });

  it('cancelling from onProgress mid-write removes the partial folder', async () => {
    const controller = new AbortController();
    let calls = 0;
    const error = await assertFailsLeavingNothing('cancelled', () =>
      exportTo('cancelled', {
        signal: controller.signal,
        onProgress: () => {
          if (++calls === 3) controller.abort();
        },
      }),
    );
    assert.ok(calls >= 3);
    assert.match(error.message, /cancelled/);
  });

  for (const failAt of [1, 4, 30]) {
    it(`a full disk at write ${failAt} removes the partial folder and says so`, async () => {
      const fileSystem = failingFileSystem(failAt);
      await assertFailsLeavingNothing('noSpace', () => exportTo('full', { fileSystem }), /full/);
      assert.ok(fileSystem.writes >= failAt);
    });
  }

  it('an I/O error on the last file written (the manifest) still leaves nothing', async () => {
    const counting = failingFileSystem(Number.MAX_SAFE_INTEGER);
    await exportTo('counted', { fileSystem: counting });
    await rm(join(parent, 'counted'), { recursive: true });
    await assertFailsLeavingNothing('io', () => exportTo('eio', { fileSystem: failingFileSystem(counting.writes, 'EIO') }), /EIO/);
  });

  it('refuses a plan that is not exact in Hugging Face format, with its reasons', async () => {
    const inexact: ExportPlan = { ...plan, huggingFace: { exact: false, reasons: ['adaptive gating has no transformers equivalent', 'layer 0 masks experts without removing them'] } };
    const error = await assertFailsLeavingNothing('notExact', () => exportHuggingFace(source, inexact, join(parent, 'inexact')));
    assert.deepEqual(error.reasons, inexact.huggingFace.reasons);
    assert.match(error.message, /adaptive gating/);
    const mixedTopK = planFor(source.spec, (layer) => ({ keptExperts: [0, 1, 2, 3], topK: layer === 0 ? 1 : 2 }));
    await assertFailsLeavingNothing('notExact', () => exportHuggingFace(source, mixedTopK, join(parent, 'topk')), /different top-k/);
  });

  it('refuses an invalid plan, naming the problems', async () => {
    const invalid = planFor(source.spec, () => ({ keptExperts: [0, 9, 0], mergeMatrix: [[1]] }));
    await assertFailsLeavingNothing('invalidPlan', () => exportHuggingFace(source, invalid, join(parent, 'invalid')), /outside 0\.\.7[\s\S]*twice[\s\S]*mergeMatrix/);
  });

  it('a source shard damaged after loading fails with a clear error, leaving nothing', async () => {
    const damaged = await writeAndLoad(join(root, 'damaged'), { architecture: 'OlmoeForCausalLM', dtype: 'F16', shards: 2 });
    try {
      const shard = join(damaged.folder, 'model-00002-of-00002.safetensors');
      await truncate(shard, (await stat(shard)).size - 100);
      const damagedPlan = planFor(damaged.spec, () => ({ keptExperts: [1, 2] }));
      await assertFailsLeavingNothing('invalidSource', () => exportHuggingFace(damaged, damagedPlan, join(parent, 'from-damaged')), /model-00002-of-00002\.safetensors changed since the model was loaded or is damaged/);

      // A garbled header in the other shard.
      const other = await open(join(damaged.folder, 'model-00001-of-00002.safetensors'), 'r+');
      await other.write(Buffer.from('{{{{'), 0, 4, 8);
      await other.close();
      await assertFailsLeavingNothing('invalidSource', () => exportHuggingFace(damaged, damagedPlan, join(parent, 'from-damaged')), /model-00001-of-00002\.safetensors/);
    } finally {
      await damaged.weights.close();
    }
  });
});
