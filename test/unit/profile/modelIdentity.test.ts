import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { modelIdentity } from '../../../server/src/profile/run';
import { writeRandomCheckpoint, type RandomCheckpoint } from '../../support/randomCheckpoint';

/** Offset in its file of `name`'s first byte of data, from the safetensors header. */
function tensorOffset(file: string, name: string): number {
  const bytes = fs.readFileSync(file);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8')) as Record<string, { data_offsets: [number, number] }>;
  return 8 + headerLength + header[name].data_offsets[0];
}

describe('model fingerprint', () => {
  let dir: string;
  let checkpoint: RandomCheckpoint;
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-identity-'));
    checkpoint = await writeRandomCheckpoint(path.join(dir, 'model'), { architecture: 'MixtralForCausalLM', numLayers: 2, numExperts: 4, topK: 2, shards: 2, seed: 11 });
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('is the same for a copy of the folder: content, not timestamps', async () => {
    const copy = path.join(dir, 'copy');
    fs.cpSync(checkpoint.folder, copy, { recursive: true });
    fs.utimesSync(path.join(copy, checkpoint.files[0]), new Date(0), new Date(0));
    assert.equal((await modelIdentity(copy)).fingerprint, (await modelIdentity(checkpoint.folder)).fingerprint);
  });

  it('changes when a weight is rewritten in place with the same shape (saved profiles and baselines go stale)', async () => {
    const edited = path.join(dir, 'edited');
    fs.cpSync(checkpoint.folder, edited, { recursive: true });
    const before = (await modelIdentity(edited)).fingerprint;
    // A small tensor (an RMSNorm weight): the header, the size and every other byte stay as they were.
    const name = 'model.layers.1.post_attention_layernorm.weight';
    const file = (JSON.parse(fs.readFileSync(path.join(edited, 'model.safetensors.index.json'), 'utf8')) as { weight_map: Record<string, string> }).weight_map[name];
    const handle = fs.openSync(path.join(edited, file), 'r+');
    try {
      fs.writeSync(handle, Buffer.from(new Float32Array([0.5]).buffer), 0, 4, tensorOffset(path.join(edited, file), name));
    } finally {
      fs.closeSync(handle);
    }
    assert.notEqual((await modelIdentity(edited)).fingerprint, before);
  });
});
