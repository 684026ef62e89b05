import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadCheckpoint, type CheckpointLoad } from '../../../server/src/checkpoint';
import { ARCHITECTURES } from '../../../server/src/checkpoint/architectures';
import { SUPPORTED_ARCHITECTURES, type DType } from '../../../server/src/checkpoint/modelSpec';
import { exportHuggingFace, previewExport, type ExportPlan } from '../../../server/src/export';
import { ModelRuntime } from '../../../server/src/runtime/modelRuntime';
import { assertClose } from '../runtime/runtimeFixtures';
import { assertBytesEqual, moeLayers, planFor, sha256, writeAndLoad } from './exportFixtures';

let root: string;
let counter = 0;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'moe-export-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});
const fresh = (label: string) => join(root, `${label}-${counter++}`);

const KEPT = [5, 1, 6, 2];
/** DeepSeek V3 as Kimi-K2 / Moonlight configure it (one group), so these plans keep no group limit to break (deepseekExport.test.ts has groups). */
const ONE_GROUP = { deepseek: { nGroup: 1, topkGroup: 1 } };
/** Rows over 8 experts: two real merges, one plain copy (kept bit-exact), one three-way merge. */
const MERGE = [
  [0.5, 0.5, 0, 0, 0, 0, 0, 0],
  [0, 0, 0, 1, 0, 0, 0, 0],
  [0, 0, 0, 0, 0.25, 0.75, 0, 0],
  [0, 0, 0, 0, 0, 0, 0.3, 0.7],
];
const ROUTER_MAP = [
  [0.5, 0.5, 0, 0, 0, 0, 0, 0],
  [0, 0, 0, 1, 0, 0, 0, 0],
  [0, 0, 0, 0, 0, 1, 0, 0],
  [0, 0, 0, 0, 0, 0, 1, 0],
];
/** Half a unit in the last place of the storage dtype, relative, plus the smallest subnormal step. */
const ROUNDING: Record<DType, { relative: number; absolute: number }> = {
  F32: { relative: 1e-6, absolute: 1e-30 },
  BF16: { relative: 2 ** -8, absolute: 1e-38 },
  F16: { relative: 2 ** -11, absolute: 2 ** -24 },
};

function assertCombination(actual: Float32Array, parts: { coefficient: number; values: Float32Array }[], dtype: DType, what: string): void {
  const { relative, absolute } = ROUNDING[dtype];
  for (let x = 0; x < actual.length; x++) {
    let expected = 0;
    let magnitude = 0;
    for (const { coefficient, values } of parts) {
      expected += coefficient * values[x];
      magnitude += Math.abs(coefficient * values[x]);
    }
    // The final rounding to the dtype, plus fp32 accumulation error, which scales with the terms (they may cancel).
    const error = Math.abs(actual[x] - expected);
    if (error > Math.abs(expected) * relative + magnitude * 2 ** -23 + absolute) assert.fail(`${what}[${x}] = ${actual[x]}, expected ${expected} (within ${dtype} rounding)`);
  }
}

type Role = 'gate' | 'up' | 'down';

/** Element range of expert j's `role` projection: its own tensor, or its slab of a fused tensor (Granite MoE). */
function expertRange(model: CheckpointLoad, layer: number, j: number, role: Role): { name: string; offset: number; elements: number } {
  const names = model.spec.tensors.layer(layer);
  if (names.expert) {
    const name = names.expert(j)[role];
    return { name, offset: 0, elements: model.weights.info(name).shape.reduce((a, b) => a * b, 1) };
  }
  const moe = model.spec.layers[layer].kind === 'moe' ? model.spec.layers[layer].moe : undefined;
  const slab = moe!.expert.intermediateSize * model.spec.hiddenSize;
  const { gateUp, down } = names.fusedExperts!;
  return role === 'down' ? { name: down, offset: j * slab, elements: slab } : { name: gateUp, offset: (2 * j + (role === 'up' ? 1 : 0)) * slab, elements: slab };
}

async function expertRaw(model: CheckpointLoad, layer: number, j: number, role: Role): Promise<Uint8Array> {
  const { name, offset, elements } = expertRange(model, layer, j, role);
  const bytes = await model.weights.readRaw(name);
  const size = bytes.byteLength / model.weights.info(name).shape.reduce((a, b) => a * b, 1);
  return bytes.subarray(offset * size, (offset + elements) * size);
}

async function expertValues(model: CheckpointLoad, layer: number, j: number, role: Role): Promise<Float32Array> {
  const { name, offset, elements } = expertRange(model, layer, j, role);
  return model.weights.readFloat32Range(name, offset, elements);
}

function expertCount(model: CheckpointLoad, layer: number): number {
  const names = model.spec.tensors.layer(layer);
  if (names.fusedExperts) return model.weights.info(names.fusedExperts.gateUp).shape[0];
  let count = 0;
  while (model.weights.has(names.expert!(count).gate)) count++;
  return count;
}

/** Every tensor the plan does not touch must be a bit-for-bit copy under its own name. */
async function assertUntouchedCopied(source: CheckpointLoad, exported: CheckpointLoad, plan: ExportPlan): Promise<void> {
  const touched = new Set<string>();
  for (const layer of Object.keys(plan.layers).map(Number)) {
    const names = source.spec.tensors.layer(layer);
    touched.add(names.router!);
    if (names.routerBias) touched.add(names.routerBias);
    if (names.correctionBias) touched.add(names.correctionBias);
    if (names.fusedExperts) for (const name of Object.values(names.fusedExperts)) touched.add(name);
    for (let j = 0; j < 8 && names.expert; j++) for (const name of Object.values(names.expert(j))) touched.add(name);
  }
  const untouched = source.weights.names().filter((name) => !touched.has(name));
  assert.ok(untouched.length > 5);
  for (const name of untouched) assertBytesEqual(await exported.weights.readRaw(name), await source.weights.readRaw(name), name);
}

async function assertManifest(folder: string): Promise<void> {
  const manifest = JSON.parse(await readFile(join(folder, 'moe_studio_manifest.json'), 'utf8')) as { files: Record<string, { bytes: number; sha256: string }> };
  const onDisk = (await readdir(folder)).filter((name) => name !== 'moe_studio_manifest.json').sort();
  assert.deepEqual(Object.keys(manifest.files).sort(), onDisk);
  for (const [name, { bytes, sha256: hash }] of Object.entries(manifest.files)) {
    const contents = await readFile(join(folder, name));
    assert.equal(contents.byteLength, bytes, `${name} size`);
    assert.equal(sha256(contents), hash, `${name} hash`);
  }
}

async function withExport(
  sourceOptions: Parameters<typeof writeAndLoad>[1],
  makePlan: (source: CheckpointLoad) => ExportPlan,
  check: (source: CheckpointLoad, exported: CheckpointLoad, plan: ExportPlan, folder: string) => Promise<void>,
  shardBytes?: number,
): Promise<void> {
  const source = await writeAndLoad(fresh('source'), sourceOptions);
  const target = fresh('export');
  try {
    const plan = makePlan(source);
    await exportHuggingFace(source, plan, target, { shardBytes });
    const exported = await loadCheckpoint(target);
    try {
      await check(source, exported, plan, target);
    } finally {
      await exported.weights.close();
    }
  } finally {
    await source.weights.close();
  }
}

describe('Hugging Face export', () => {
  // GPT-OSS's interleaved and MXFP4 experts have their own cases in gptOssExport.test.ts.
  for (const architecture of SUPPORTED_ARCHITECTURES.filter((name) => name !== 'GptOssForCausalLM')) {
    for (const dtype of ['F32', 'BF16', 'F16'] as const) {
      it(`${architecture} ${dtype}: prune-only keeps, renumbers and slices bit for bit`, async () => {
        await withExport(
          { architecture, dtype, seed: 3, ...ONE_GROUP },
          (source) => planFor(source.spec, () => ({ keptExperts: KEPT })),
          async (source, exported, plan, folder) => {
            const numExpertsKey = ARCHITECTURES[architecture].config.numExperts;
            assert.equal(exported.config[numExpertsKey], 4);
            assert.equal(exported.config.num_experts_per_tok, source.config.num_experts_per_tok);
            assert.equal(exported.config.torch_dtype, source.config.torch_dtype);
            const record = exported.config.moe_studio as Record<string, unknown>;
            assert.deepEqual(record.original_expert_ids, Object.fromEntries(moeLayers(source.spec).map((l) => [String(l), KEPT])));
            assert.deepEqual(record.plan, plan.planRecord);
            assert.deepEqual(record.evaluation, plan.evaluation);
            assert.equal(record.num_experts_per_layer, undefined);
            for (const layer of moeLayers(source.spec)) {
              const before = source.spec.tensors.layer(layer);
              const afterNames = exported.spec.tensors.layer(layer);
              assert.equal(expertCount(exported, layer), 4);
              for (const [i, j] of KEPT.entries()) {
                for (const role of ['gate', 'up', 'down'] as const) {
                  assertBytesEqual(await expertRaw(exported, layer, i, role), await expertRaw(source, layer, j, role), `layer ${layer} expert ${i} ${role}`);
                }
              }
              const router = await source.weights.readRaw(before.router!);
              const rowBytes = router.byteLength / 8;
              const expectedRouter = Buffer.concat(KEPT.map((j) => router.subarray(j * rowBytes, (j + 1) * rowBytes)));
              assertBytesEqual(await exported.weights.readRaw(afterNames.router!), expectedRouter, `layer ${layer} router`);
              assert.deepEqual(exported.weights.info(afterNames.router!).shape, [4, source.spec.hiddenSize]);
            }
            await assertUntouchedCopied(source, exported, plan);
            for (const file of ['tokenizer.json', 'tokenizer_config.json']) {
              assertBytesEqual(await readFile(join(folder, file)), await readFile(join(source.folder, file)), file);
            }
            const card = await readFile(join(folder, 'README.md'), 'utf8');
            assert.match(card, /perplexity \| 12\.5 \| 13\.25/);
            assert.match(card, /test\.jsonl/);
            assert.match(card, /8 → 4 \| 5, 1, 6, 2/);
            await assertManifest(folder);
            assert.deepEqual((await readdir(folder)).filter((name) => name.endsWith('.safetensors')), ['model.safetensors']);
          },
        );
      });

      it(`${architecture} ${dtype}: merged experts are Σ M·W and mapped router rows Σ R·r, rounded to ${dtype}`, async () => {
        await withExport(
          { architecture, dtype, seed: 4, ...ONE_GROUP },
          (source) => planFor(source.spec, () => ({ keptExperts: [0, 3, 5, 7], mergeMatrix: MERGE, routerMap: ROUTER_MAP })),
          async (source, exported, plan, folder) => {
            const record = exported.config.moe_studio as Record<string, unknown>;
            assert.deepEqual(record.merged_layers, moeLayers(source.spec));
            for (const layer of moeLayers(source.spec)) {
              const before = source.spec.tensors.layer(layer);
              const afterNames = exported.spec.tensors.layer(layer);
              for (const [i, row] of MERGE.entries()) {
                for (const role of ['gate', 'up', 'down'] as const) {
                  const name = `layer ${layer} expert ${i} ${role}`;
                  assert.equal(exported.weights.info(expertRange(exported, layer, i, role).name).dtype, dtype);
                  if (i === 1) {
                    assertBytesEqual(await expertRaw(exported, layer, i, role), await expertRaw(source, layer, 3, role), `${name} (a plain copy)`);
                    continue;
                  }
                  const parts = await Promise.all(
                    row.flatMap((coefficient, j) => (coefficient ? [expertValues(source, layer, j, role).then((values) => ({ coefficient, values }))] : [])),
                  );
                  assertCombination(await expertValues(exported, layer, i, role), parts, dtype, name);
                }
              }
              const router = await source.weights.readFloat32(before.router!);
              const hidden = source.spec.hiddenSize;
              const mapped = await exported.weights.readFloat32(afterNames.router!);
              for (const [i, row] of ROUTER_MAP.entries()) {
                const parts = row.flatMap((coefficient, j) => (coefficient ? [{ coefficient, values: router.subarray(j * hidden, (j + 1) * hidden) }] : []));
                assertCombination(mapped.subarray(i * hidden, (i + 1) * hidden), parts, dtype, `layer ${layer} router row ${i}`);
              }
            }
            await assertUntouchedCopied(source, exported, plan);
            await assertManifest(folder);
            assert.match(await readFile(join(folder, 'README.md'), 'utf8'), /pruned and merged/);
          },
        );
      });
    }
  }

  it('output compensation scales each kept expert\'s down projection, and only that', async () => {
    const scales = [2, 1, 0.5, 1.5];
    await withExport(
      { architecture: 'OlmoeForCausalLM', dtype: 'BF16', seed: 6 },
      (source) => planFor(source.spec, () => ({ keptExperts: [0, 3, 5, 7], outputScale: scales })),
      async (source, exported) => {
        for (const layer of moeLayers(source.spec)) {
          const before = source.spec.tensors.layer(layer);
          const after = exported.spec.tensors.layer(layer);
          for (const [i, id] of [0, 3, 5, 7].entries()) {
            for (const role of ['gate', 'up'] as const) assertBytesEqual(await exported.weights.readRaw(after.expert!(i)[role]), await source.weights.readRaw(before.expert!(id)[role]), `layer ${layer} expert ${i} ${role}`);
            const down = after.expert!(i).down;
            if (scales[i] === 1) assertBytesEqual(await exported.weights.readRaw(down), await source.weights.readRaw(before.expert!(id).down), `${down} (unscaled)`);
            else assertCombination(await exported.weights.readFloat32(down), [{ coefficient: scales[i], values: await source.weights.readFloat32(before.expert!(id).down) }], 'BF16', down);
          }
        }
      },
    );
  });

  it('shards past shardBytes, with an index whose total_size is the tensor bytes', async () => {
    await withExport(
      { architecture: 'Qwen2MoeForCausalLM', dtype: 'BF16', shards: 3, seed: 5 },
      (source) => planFor(source.spec, () => ({ keptExperts: [7, 0, 3], topK: 1 })),
      async (source, exported, plan, folder) => {
        const files = (await readdir(folder)).sort();
        const shards = files.filter((name) => name.endsWith('.safetensors'));
        assert.ok(shards.length > 2, `expected several shards, got ${shards.join(', ')}`);
        shards.forEach((name, i) => assert.equal(name, `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`));
        const index = JSON.parse(await readFile(join(folder, 'model.safetensors.index.json'), 'utf8'));
        const names = exported.weights.names();
        const totalSize = names.reduce((sum, name) => sum + exported.weights.info(name).byteLength, 0);
        assert.equal(index.metadata.total_size, totalSize);
        assert.deepEqual(Object.keys(index.weight_map).sort(), [...names].sort());
        for (const name of names) assert.equal(index.weight_map[name], exported.weights.info(name).file.split('/').pop());
        assert.equal(exported.config.num_experts, 3);
        assert.equal(exported.config.num_experts_per_tok, 1);
        const firstLayer = exported.spec.layers[0];
        assert.ok(firstLayer.kind === 'moe' && firstLayer.moe.topK === 1);
        await assertUntouchedCopied(source, exported, plan);
        await assertManifest(folder);
      },
      60_000,
    );
  });

  it('records per-layer expert counts as a config extension, says stock loaders need uniform counts, and loads back here', async () => {
    const source = await writeAndLoad(fresh('source'), { architecture: 'MixtralForCausalLM', dtype: 'BF16', numLayers: 3 });
    const target = fresh('export');
    let runtimes: ModelRuntime[] = [];
    try {
      const plan: ExportPlan = { ...planFor(source.spec, () => ({ keptExperts: [0, 1, 2, 3] })), layers: { 0: { keptExperts: [0, 1, 2, 3] }, 2: { keptExperts: [4, 5, 6, 7, 0, 1] } } };
      const preview = previewExport(source, plan);
      assert.equal(preview.nonUniformExperts, true);
      await exportHuggingFace(source, plan, target);
      const config = JSON.parse(await readFile(join(target, 'config.json'), 'utf8'));
      assert.equal(config.num_local_experts, 8);
      assert.deepEqual(config.moe_studio.num_experts_per_layer, [4, 8, 6]);
      assert.deepEqual(config.moe_studio.original_expert_ids, { 0: [0, 1, 2, 3], 1: [0, 1, 2, 3, 4, 5, 6, 7], 2: [4, 5, 6, 7, 0, 1] });
      assert.match(await readFile(join(target, 'README.md'), 'utf8'), /Stock `transformers` loaders need the same count in every layer/);
      await assertManifest(target);

      // Our own loader reads the extension, and the exported model computes what the source computes
      // with the plan's experts masked (pruning only, so the two are the same function).
      const reloaded = await loadCheckpoint(target);
      await reloaded.weights.close();
      assert.deepEqual(reloaded.spec.layers.map((layer) => (layer.kind === 'moe' ? layer.moe.numExperts : 0)), [4, 8, 6]);
      runtimes = [await ModelRuntime.open(source.folder, { threads: 1 }), await ModelRuntime.open(target, { threads: 1 })];
      const kept = (ids: number[]) => Array.from({ length: 8 }, (_, e) => ids.includes(e));
      const sequences = [Int32Array.from([1, 5, 9, 2, 7, 3]), Int32Array.from([4, 4, 8])];
      const [planned, exported] = await Promise.all([
        runtimes[0].forward({ sequences, outputs: { logits: 'all' }, plan: { layers: { 0: { keptExperts: kept([0, 1, 2, 3]) }, 2: { keptExperts: kept([4, 5, 6, 7, 0, 1]) } } } }),
        runtimes[1].forward({ sequences, outputs: { logits: 'all' } }),
      ]);
      planned.sequences.forEach((sequence, i) => assertClose(exported.sequences[i].logits!, sequence.logits!, `sequence ${i} logits`, 1e-5));
    } finally {
      await Promise.all(runtimes.map((runtime) => runtime.close()));
      await source.weights.close();
    }
  });

  it('previews removed, renamed, merged, sliced and mapped tensors, bytes saved and the new config', async () => {
    const source = await writeAndLoad(fresh('source'), { architecture: 'MixtralForCausalLM', dtype: 'BF16', numLayers: 2 });
    try {
      const prune = previewExport(source, planFor(source.spec, () => ({ keptExperts: KEPT, topK: 1 })));
      const expertBytes = source.weights.info(source.spec.tensors.layer(0).expert!(0).gate).byteLength;
      const routerRowBytes = source.spec.hiddenSize * 2;
      assert.equal(prune.counts.removed, 2 * 4 * 3);
      assert.equal(prune.counts.renamed, 2 * 3 * 3, 'of 5, 1, 6, 2 only expert 1 keeps its id');
      assert.equal(prune.counts.sliced, 2);
      assert.equal(prune.bytesSaved, 2 * (4 * 3 * expertBytes + 4 * routerRowBytes));
      assert.equal(prune.bytesBefore - prune.bytesAfter, prune.bytesSaved);
      const renamed = prune.tensors.find((t) => t.name === 'model.layers.0.block_sparse_moe.experts.0.w1.weight');
      assert.deepEqual(renamed?.sources, ['model.layers.0.block_sparse_moe.experts.5.w1.weight']);
      assert.equal(renamed?.action, 'renamed');
      const after = JSON.parse(prune.configAfter);
      assert.equal(after.num_local_experts, 4);
      assert.equal(after.num_experts_per_tok, 1);
      assert.deepEqual(JSON.parse(prune.configBefore), source.config);
      assert.deepEqual(prune.notExactReasons, []);

      const merge = previewExport(source, planFor(source.spec, () => ({ keptExperts: [0, 3, 5, 7], mergeMatrix: MERGE, routerMap: ROUTER_MAP })));
      assert.equal(merge.counts.merged, 2 * 3 * 3);
      assert.equal(merge.counts.mapped, 2);
      assert.equal(merge.counts.removed, 2 * 3 * 1, 'expert 2 is in no merge row');
      const merged = merge.tensors.find((t) => t.name === 'model.layers.1.block_sparse_moe.experts.3.w2.weight');
      assert.deepEqual(merged?.sources, ['model.layers.1.block_sparse_moe.experts.6.w2.weight', 'model.layers.1.block_sparse_moe.experts.7.w2.weight']);

      const refused = previewExport(source, planFor(source.spec, () => ({ keptExperts: KEPT }), { huggingFace: { exact: false, reasons: ['adaptive gating'] } }));
      assert.deepEqual(refused.notExactReasons, ['adaptive gating']);
    } finally {
      await source.weights.close();
    }
  });
});
