/**
 * Export speed and memory on a Mixtral-shaped bf16 checkpoint of about 7.4 GB (hidden 4096, expert
 * intermediate 7168, 8 experts, 5 layers), pruned to 4 experts per layer.
 *
 * Bars: peak RSS of the exporting process <= 1 GiB (it runs in a child process, so its maxRSS is the
 * export's own), and export throughput >= 50% of a plain copy of the same source files in this run
 * (read + write + fsync, as export does). Everything is written under the OS temp folder and removed.
 *
 *   node --expose-gc --import tsx bench/export.bench.ts
 */

import { execFileSync, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, open, readdir, rm, stat, statfs, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadCheckpoint } from '../server/src/checkpoint';
import { listExpectedTensors } from '../server/src/checkpoint/expectedTensors';
import { parseModelConfig } from '../server/src/checkpoint/config';
import { tensorByteLength, writeSafetensors } from '../server/src/checkpoint/safetensorsWriter';
import { exportHuggingFace, type ExportPlan } from '../server/src/export';
import { randomCheckpointConfig } from '../test/support/randomCheckpoint';
import { buildTinyTokenizer } from '../test/support/tinyTokenizer';

const LAYERS = 5;
const KEPT = [0, 2, 5, 7];
const MiB = 1024 * 1024;
const RSS_BAR_BYTES = 1024 * MiB;
const THROUGHPUT_BAR = 0.5;

async function writeSource(folder: string): Promise<number> {
  const config = randomCheckpointConfig({
    architecture: 'MixtralForCausalLM',
    dtype: 'BF16',
    hiddenSize: 4096,
    numHeads: 32,
    numKvHeads: 8,
    numLayers: LAYERS,
    numExperts: 8,
    expertIntermediateSize: 7168,
    vocabSize: 320,
  });
  const spec = parseModelConfig(config);
  const tensors = listExpectedTensors(spec).map(({ name, shape }) => ({ name, dtype: 'BF16' as const, shape }));
  const largest = Math.max(...tensors.map(tensorByteLength));
  // One pattern of small bf16 values, reused for every tensor: filling 7 GB with random numbers would take longer than the export.
  const pattern = new Uint16Array(largest / 2);
  for (let i = 0; i < pattern.length; i++) pattern[i] = 0x3c00 + (((i * 2654435761) >>> 20) & 0x3ff);
  const patternBytes = new Uint8Array(pattern.buffer);
  // A shard per layer (embeddings with the first, head with the last), like published checkpoints.
  const shardOf = (name: string) => Math.min(LAYERS - 1, Number(/^model\.layers\.(\d+)\./.exec(name)?.[1] ?? (name.includes('embed') ? 0 : LAYERS - 1)));
  const weightMap: Record<string, string> = {};
  let total = 0;
  for (let shard = 0; shard < LAYERS; shard++) {
    const file = `model-${String(shard + 1).padStart(5, '0')}-of-${String(LAYERS).padStart(5, '0')}.safetensors`;
    const inShard = tensors.filter((tensor) => shardOf(tensor.name) === shard);
    await writeSafetensors(join(folder, file), inShard, (tensor) => patternBytes.subarray(0, tensorByteLength(tensor)));
    for (const tensor of inShard) {
      weightMap[tensor.name] = file;
      total += tensorByteLength(tensor);
    }
  }
  await writeFile(join(folder, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2));
  await writeFile(join(folder, 'config.json'), JSON.stringify(config, null, 2));
  const { tokenizerJson, tokenizerConfig } = buildTinyTokenizer(320);
  await writeFile(join(folder, 'tokenizer.json'), JSON.stringify(tokenizerJson));
  await writeFile(join(folder, 'tokenizer_config.json'), JSON.stringify(tokenizerConfig));
  await writeFile(join(folder, 'generation_config.json'), JSON.stringify({ bos_token_id: 1, eos_token_id: 2 }));
  return total;
}

/** The baseline: read and write every source weight file in 16 MiB chunks, then fsync, as a careful `cp` would. */
async function plainCopy(from: string, to: string): Promise<number> {
  await mkdir(to);
  const buffer = Buffer.allocUnsafe(16 * MiB);
  let bytes = 0;
  for (const name of (await readdir(from)).filter((n) => n.endsWith('.safetensors'))) {
    const input = await open(join(from, name), 'r');
    const output = await open(join(to, name), 'w');
    for (;;) {
      const { bytesRead } = await input.read(buffer, 0, buffer.byteLength, null);
      if (bytesRead === 0) break;
      await output.write(buffer, 0, bytesRead);
      bytes += bytesRead;
    }
    await output.sync();
    await Promise.all([input.close(), output.close()]);
  }
  return bytes;
}

/** Runs in a child process so that its maxRSS is the export's peak alone. */
async function exportChild(sourceFolder: string, target: string): Promise<void> {
  const source = await loadCheckpoint(sourceFolder);
  const plan: ExportPlan = {
    layers: Object.fromEntries(source.spec.layers.map((layer) => [layer.index, { keptExperts: KEPT }])),
    huggingFace: { exact: true },
    planRecord: { bench: true },
  };
  const started = performance.now();
  const result = await exportHuggingFace(source, plan, target);
  const seconds = (performance.now() - started) / 1000;
  await source.weights.close();
  const written = result.files.filter((file) => file.path.endsWith('.safetensors')).reduce((sum, file) => sum + file.bytes, 0);
  process.stdout.write(JSON.stringify({ seconds, written, maxRssBytes: process.resourceUsage().maxRSS * 1024, shards: result.weightFiles.length }) + '\n');
}

async function main(): Promise<void> {
  if (process.argv[2] === '--child') return exportChild(process.argv[3], process.argv[4]);

  console.log(execFileSync('df', ['-h', tmpdir()], { encoding: 'utf8' }).trim());
  const free = await statfs(tmpdir());
  const needed = 20e9;
  if (free.bavail * free.bsize < needed) throw new Error(`The bench needs about ${needed / 1e9} GB free in ${tmpdir()}.`);

  const root = await mkdtemp(join(tmpdir(), 'moe-export-bench-'));
  try {
    const source = join(root, 'source');
    await mkdir(source);
    let started = performance.now();
    const sourceBytes = await writeSource(source);
    console.log(`wrote the ${(sourceBytes / 1e9).toFixed(2)} GB source in ${((performance.now() - started) / 1000).toFixed(1)} s`);

    started = performance.now();
    const copied = await plainCopy(source, join(root, 'copy'));
    const copySeconds = (performance.now() - started) / 1000;
    await rm(join(root, 'copy'), { recursive: true });

    const child = spawnSync(process.execPath, [...process.execArgv, process.argv[1], '--child', source, join(root, 'export')], { encoding: 'utf8', maxBuffer: 16 * MiB });
    if (child.status !== 0) throw new Error(`the export process failed:\n${child.stderr}`);
    const exported = JSON.parse(child.stdout.trim().split('\n').pop()!) as { seconds: number; written: number; maxRssBytes: number; shards: number };
    const exportedFolderBytes = (await Promise.all((await readdir(join(root, 'export'))).map((name) => stat(join(root, 'export', name))))).reduce((sum, s) => sum + s.size, 0);

    const copyRate = copied / copySeconds / MiB;
    const exportRate = exported.written / exported.seconds / MiB;
    const rows: [string, string, string][] = [
      ['source (bf16, 5 layers × 8 experts)', `${(sourceBytes / 1e9).toFixed(2)} GB`, ''],
      ['export (keep 4 of 8), weights written', `${(exported.written / 1e9).toFixed(2)} GB in ${exported.shards} shards`, `folder ${(exportedFolderBytes / 1e9).toFixed(2)} GB`],
      ['plain copy (read+write+fsync)', `${copySeconds.toFixed(1)} s`, `${copyRate.toFixed(0)} MiB/s`],
      ['export (stream+hash+fsync+verify)', `${exported.seconds.toFixed(1)} s`, `${exportRate.toFixed(0)} MiB/s`],
      ['export / copy throughput', `${((exportRate / copyRate) * 100).toFixed(0)} %`, `bar >= ${THROUGHPUT_BAR * 100} %`],
      ['export peak RSS', `${(exported.maxRssBytes / MiB).toFixed(0)} MiB`, `bar <= ${RSS_BAR_BYTES / MiB} MiB`],
    ];
    const width = Math.max(...rows.map(([a]) => a.length));
    console.log('\n' + rows.map(([a, b, c]) => `${a.padEnd(width)}  ${b.padStart(22)}  ${c}`).join('\n'));
    const failures = [
      ...(exported.maxRssBytes > RSS_BAR_BYTES ? ['peak RSS over the bar'] : []),
      ...(exportRate < THROUGHPUT_BAR * copyRate ? ['throughput under the bar'] : []),
    ];
    console.log(failures.length ? `\nFAIL: ${failures.join(', ')}` : '\nPASS');
    if (failures.length) process.exitCode = 1;
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
