/**
 * Real checkpoint shapes under a memory budget (issue #13's bars), on synthetic bf16 checkpoints written into
 * one temporary folder, shared by every case and removed afterwards (realShapeCheckpoint.ts):
 *   - OLMoE-1B-7B, all 16 layers (13.8 GB bf16, 27.7 GB fp32);
 *   - Qwen3-30B-A3B's layer shapes, 6 of its 48 layers.
 * Each is profiled (a forward with every MoE capture and no head, as `moe-studio profile` runs it) over 16k
 * tokens under the memory budget (default 6 GB), in fp32 and in int8, each run in a child process whose
 * resident memory is watched and which is killed at budget + 1 GB (a runtime that does not stream).
 * Bars:
 *   memory     peak RSS <= budget + 0.5 GB;
 *   streaming  throughput per layer >= 75% of the same precision resident on a cut of the same model that fits
 *              (its first layers; same tokens, same run);
 *   fp32       >= 1.5x PyTorch eager at 2 threads on the OLMoE 4-layer cut (loss + MoE captures on both sides,
 *              alternating rounds as in runtime.bench.ts);
 *   int8       >= 4x PyTorch eager fp32 there, with the share of top-k slots agreeing with fp32 and the loss
 *              difference beside it;
 *   peak       the fraction of onnxruntime's MatMul peak each precision reaches (reported, no bar).
 * Also int8's agreement with fp32 on the demo model's validation rows.
 *
 * Run: npm run bench -- real   (or node --expose-gc --import tsx bench/realShape.bench.ts)
 * Environment: BENCH_MEMORY_BUDGET (GB, default 6); BENCH_REAL_TOKENS (profile tokens, default 16384);
 * BENCH_REAL_MODELS (olmoe,qwen3); BENCH_REAL_LAYERS (overrides both models' layer counts, for quick checks);
 * BENCH_REAL_DIR (write the checkpoints there and keep them for the next run instead of a temporary folder);
 * BENCH_REAL_PRECISIONS (fp32,int8: the profile cases to run); BENCH_REAL_TORCH=0 (skip the cut's agreement
 * and PyTorch rounds), for a quick re-measurement of the streaming cases alone; BENCH_REAL_WRITE_AHEAD=compare (each
 * streamed profile also without the layer writer, side by side); BENCH_REAL_TORCH_ROUNDS and _REPEATS (3 and 2:
 * alternating rounds against PyTorch, and forwards per process in each).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { statfs } from 'node:fs/promises';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { loadTokenizer, parseModelConfig } from '../server/src/checkpoint';
import type { ModelSpec } from '../server/src/checkpoint/modelSpec';
import { ModelRuntime, RuntimeOptions } from '../server/src/runtime/modelRuntime';
import { PRECISIONS, type Precision } from '../server/src/runtime/memoryBudget';
import { Prng } from '../test/support/prng';
import type { RandomCheckpointOptions } from '../test/support/randomCheckpoint';
import { forwardFlops, matmulPeakGflops } from './matmulBound';
import { peakRssBytes } from './peakRss';
import { Agreement, formatAgreement, measurePrecisionAgreement, meanLoss, selectedByLayer, topKAgreement } from './precisionAgreement';
import { bf16Bytes, residentWeightBytes, writeCut, writeRealShapeCheckpoint, WrittenCheckpoint } from './realShapeCheckpoint';
import { BlasChoice, blasCandidates, hasTorch, timeTorch, TorchTiming } from './torchBaseline';

const ROOT = resolve(__dirname, '..');
const GB = 1e9;
const THREADS = 2;
const SEQUENCE_LENGTH = 256;
const BUDGET = Number(process.env.BENCH_MEMORY_BUDGET ?? 6) * GB;
const PROFILE_TOKENS = Number(process.env.BENCH_REAL_TOKENS ?? 16384);
/** BENCH_REAL_WRITE_AHEAD=compare: also each streamed profile without the layer writer, in the same run. */
const COMPARE_WRITE_AHEAD = process.env.BENCH_REAL_WRITE_AHEAD === 'compare';
const PROFILE_PRECISIONS = PRECISIONS.filter((p) => !process.env.BENCH_REAL_PRECISIONS || process.env.BENCH_REAL_PRECISIONS.split(',').includes(p));
/** Tokens of the loss comparison on the cuts, and of each PyTorch round (8 sequences of 256). */
const CUT_AGREEMENT_TOKENS = 4096;
const TORCH_TOKENS = 2048;
const TORCH_ROUNDS = Number(process.env.BENCH_REAL_TORCH_ROUNDS ?? 3);
const TORCH_REPEATS = Number(process.env.BENCH_REAL_TORCH_REPEATS ?? 2);

interface RealModel {
  key: string;
  name: string;
  checkpoint: RandomCheckpointOptions;
  /** Layers of the resident cut (and of the PyTorch comparison, where `torch` is set). */
  cutLayers: number;
  torch: boolean;
}

const MODELS: RealModel[] = [
  {
    key: 'olmoe',
    name: 'OLMoE-1B-7B',
    checkpoint: { architecture: 'OlmoeForCausalLM', seed: 1, vocabSize: 50304, hiddenSize: 2048, numLayers: 16, numHeads: 16, numKvHeads: 16, numExperts: 64, topK: 8, expertIntermediateSize: 1024 },
    cutLayers: 4,
    torch: true,
  },
  {
    key: 'qwen3',
    name: 'Qwen3-30B-A3B, 6 of 48 layers',
    checkpoint: { architecture: 'Qwen3MoeForCausalLM', seed: 2, vocabSize: 151936, hiddenSize: 2048, numLayers: 6, numHeads: 32, numKvHeads: 4, headDim: 128, numExperts: 128, topK: 8, expertIntermediateSize: 768, ropeTheta: 1e6 },
    cutLayers: 2,
    torch: false,
  },
];

/** What a child process runs; its result is the last line it prints. */
type Case =
  | { kind: 'profile'; folder: string; precision: Precision; memoryBudget: number; sequencesFile: string; warmUp: boolean; selectedFile: string; writeAhead?: boolean }
  | { kind: 'forward'; folder: string; precision: Precision; memoryBudget: number; sequencesFile: string; repeats: number }
  | { kind: 'agreement'; folder: string; memoryBudget: number; sequencesFile: string };

interface CaseResult {
  openSeconds: number;
  seconds: number;
  peakRss: number;
  meanLoss?: number;
  topK?: number[];
  agreement?: Agreement;
}

interface ChildOutcome {
  result?: CaseResult;
  /** Highest RSS seen by polling, or the child's own VmHWM, whichever is larger. */
  peakRss: number;
  failure?: string;
}

interface ProfileRow {
  model: string;
  precision: Precision;
  run: string;
  layers: number;
  tokens: number;
  outcome: ChildOutcome;
  flops: number;
  load: string;
}

async function main(): Promise<void> {
  if (process.argv[2] === '--case') return runCase(JSON.parse(process.argv[3]) as Case);
  const cpuFlags = existsSync('/proc/cpuinfo') ? readFileSync('/proc/cpuinfo', 'utf8') : '';
  const isa = ['avx512f', 'avx512_vnni', 'avx_vnni', 'amx_int8'].filter((flag) => new RegExp(`\\b${flag}\\b`).test(cpuFlags));
  console.log(`${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores (${isa.join(', ') || 'no AVX-512/VNNI/AMX'}), ${(totalmem() / GB).toFixed(1)} GB RAM`);
  console.log(`${loadLine('start')}; budget ${fmtGB(BUDGET)}, ${PROFILE_TOKENS} profile tokens, ${THREADS} threads`);

  const peaks = new Map<Precision, number>();
  const measurePeaks = async () => {
    for (const precision of PRECISIONS) peaks.set(precision, Math.max(peaks.get(precision) ?? 0, await matmulPeakGflops(THREADS, precision)));
  };
  await measurePeaks();

  const demoAgreement = await demoModelAgreement();
  const only = process.env.BENCH_REAL_MODELS?.split(',');
  const layerOverride = process.env.BENCH_REAL_LAYERS ? Number(process.env.BENCH_REAL_LAYERS) : undefined;
  const torchAvailable = hasTorch();
  if (!torchAvailable) console.log('/usr/bin/python3 has no torch: skipping the PyTorch comparison');

  const keep = process.env.BENCH_REAL_DIR;
  const root = keep ? (mkdirSync(keep, { recursive: true }), keep) : mkdtempSync(join(tmpdir(), 'moe-real-shape-'));
  const { bavail, bsize } = await statfs(root);
  const needed = MODELS.filter((m) => !only || only.includes(m.key)).reduce((sum, m) => sum + bf16Bytes({ ...m.checkpoint, numLayers: layerOverride ?? m.checkpoint.numLayers }), 0);
  if (!keep && bavail * bsize < needed + 2 * GB) {
    rmSync(root, { recursive: true, force: true });
    throw new Error(`The bench writes ${fmtGB(needed)} of checkpoints and needs ${fmtGB(needed + 2 * GB)} free in ${tmpdir()}; there are ${fmtGB(bavail * bsize)}.`);
  }
  const rows: ProfileRow[] = [];
  const verdicts: string[] = [];
  try {
    for (const model of MODELS.filter((m) => !only || only.includes(m.key))) {
      const checkpoint = { ...model.checkpoint, numLayers: layerOverride ?? model.checkpoint.numLayers };
      const cutLayers = Math.min(model.cutLayers, checkpoint.numLayers!);
      const full = await writeOnce(join(root, `${model.key}-${checkpoint.numLayers}`), checkpoint);
      const cutFolder = join(root, `${model.key}-${checkpoint.numLayers}-cut${cutLayers}`);
      const cut = existsSync(join(cutFolder, 'config.json')) ? loaded(cutFolder) : await writeCut(full, cutFolder, cutLayers);
      console.log(`\n${model.name}: ${full.spec.layers.length} layers, ${fmtGB(full.bytes)} bf16, resident ${fmtGB(residentWeightBytes(full.spec, 'fp32'))} fp32 / ${fmtGB(residentWeightBytes(full.spec, 'int8'))} int8; cut of ${cutLayers} layers`);

      const sequences = randomSequences(PROFILE_TOKENS / SEQUENCE_LENGTH, full.spec.vocabSize, 7);
      const sequencesFile = writeSequences(root, `${model.key}-profile`, sequences);
      const streamed = new Map<Precision, ChildOutcome>();
      for (const precision of PROFILE_PRECISIONS) {
        const profile = async (folder: string, spec: ModelSpec, run: string, memoryBudget: number, rssLimit: number, warmUp: boolean, writeAhead?: boolean) => {
          const load = loadavg()[0].toFixed(1);
          const selectedFile = join(root, `${model.key}-${run}-${precision}.selected`);
          const outcome = await runChild({ kind: 'profile', folder, precision, memoryBudget, sequencesFile, warmUp, selectedFile, writeAhead }, rssLimit);
          rows.push({ model: model.name, precision, run, layers: spec.layers.length, tokens: PROFILE_TOKENS, outcome, flops: forwardFlops(spec, sequences) - headFlops(spec, PROFILE_TOKENS), load });
          return outcome;
        };
        // Resident: the cut with a budget of the whole machine, after a one-sequence warm-up, forward timed alone.
        const resident = await profile(cut.folder, cut.spec, `resident cut`, totalmem(), availableMemory() - 0.5 * GB, true);
        // Streamed: the whole model under the budget, one profile as a user runs it (opening included).
        const stream = await profile(full.folder, full.spec, 'streamed', BUDGET, BUDGET + 1 * GB, false);
        streamed.set(precision, stream);
        verdicts.push(memoryVerdict(model.name, precision, stream));
        verdicts.push(streamingVerdict(model.name, precision, resident, stream, cut.spec.layers.length, full.spec.layers.length));
        if (COMPARE_WRITE_AHEAD) {
          // The same streamed profile with every layer written in turn on the runtime's thread (as before the layer writer).
          const inTurn = await profile(full.folder, full.spec, 'streamed, written in turn', BUDGET, BUDGET + 1 * GB, false, false);
          verdicts.push(streamingVerdict(`${model.name} (layers written in turn)`, precision, resident, inTurn, cut.spec.layers.length, full.spec.layers.length));
        }
      }
      const streamedAgreement = agreementOfFiles(join(root, `${model.key}-streamed-fp32.selected`), join(root, `${model.key}-streamed-int8.selected`), streamed);
      if (streamedAgreement) verdicts.push(`${model.name}, int8 against fp32, streamed profile of ${PROFILE_TOKENS} tokens: ${formatAgreement(streamedAgreement)}`);
      if (process.env.BENCH_REAL_TORCH === '0') continue;
      const cutSequencesFile = writeSequences(root, `${model.key}-cut-agreement`, randomSequences(CUT_AGREEMENT_TOKENS / SEQUENCE_LENGTH, full.spec.vocabSize, 11));
      const cutAgreement = await runChild({ kind: 'agreement', folder: cut.folder, memoryBudget: totalmem(), sequencesFile: cutSequencesFile }, availableMemory() - 0.5 * GB);
      const agreementText = cutAgreement.result?.agreement ? formatAgreement(cutAgreement.result.agreement) : `not measured (${cutAgreement.failure})`;
      verdicts.push(`${model.name}, int8 against fp32, ${cutLayers}-layer cut, ${CUT_AGREEMENT_TOKENS} tokens with loss: ${agreementText}`);
      if (model.torch && torchAvailable) verdicts.push(...(await torchRounds(model.name, cut, root, agreementText, peaks)));
    }
  } finally {
    if (!keep) rmSync(root, { recursive: true, force: true });
  }
  await measurePeaks();

  printProfiles(rows, peaks);
  console.log(`\nMatMul peak at ${THREADS} threads (onnxruntime, [512,1024]x[1024,4096]): fp32 ${peaks.get('fp32')!.toFixed(0)} GFLOP/s, int8 ${peaks.get('int8')!.toFixed(0)} GFLOP/s`);
  if (demoAgreement) console.log(`demo model, int8 against fp32 on its validation rows: ${demoAgreement}`);
  for (const line of verdicts) console.log(line);
  console.log(loadLine('end'));
}

/** int8 against fp32 on demo/model over its validation rows (real text, a trained router). */
async function demoModelAgreement(): Promise<string | undefined> {
  const folder = join(ROOT, 'demo/model');
  if (!existsSync(join(folder, 'model.safetensors'))) return undefined;
  const tokenizer = await loadTokenizer(folder);
  const rows = ['code', 'prose', 'arithmetic', 'records'].flatMap((domain) => readFileSync(join(ROOT, `demo/data/${domain}.valid.jsonl`), 'utf8').split('\n').filter((line) => line.trim()).slice(0, 16));
  const sequences = rows.map((line) => Int32Array.from(tokenizer.encode((JSON.parse(line) as { text: string }).text).slice(0, SEQUENCE_LENGTH))).filter((s) => s.length > 1);
  return formatAgreement(await measurePrecisionAgreement(folder, sequences, { threads: THREADS }));
}

/**
 * Ours (fp32, then int8) against PyTorch eager fp32 on the cut, in alternating rounds: each round runs our
 * fp32 forward, PyTorch's, then our int8 one, each in its own process (only one model in memory at a time),
 * each a median of TORCH_REPEATS forwards after a warm-up. The median round's ratio is the row's.
 */
async function torchRounds(name: string, cut: WrittenCheckpoint, root: string, agreement: string, peaks: Map<Precision, number>): Promise<string[]> {
  const sequences = randomSequences(TORCH_TOKENS / SEQUENCE_LENGTH, cut.spec.vocabSize, 13);
  const sequencesFile = writeSequences(root, 'torch', sequences);
  const blas: BlasChoice = { candidates: blasCandidates() };
  const ours = new Map<Precision, number[]>(PRECISIONS.map((p) => [p, []]));
  const torch: TorchTiming[] = [];
  const loads: string[] = [];
  for (let round = 0; round < TORCH_ROUNDS; round++) {
    loads.push(loadavg()[0].toFixed(1));
    for (const precision of PRECISIONS) {
      const outcome = await runChild({ kind: 'forward', folder: cut.folder, precision, memoryBudget: totalmem(), sequencesFile, repeats: TORCH_REPEATS }, availableMemory() - 0.5 * GB);
      if (!outcome.result) return [`${name} against PyTorch: our ${precision} forward failed (${outcome.failure})`];
      ours.get(precision)!.push(outcome.result.seconds);
      if (precision === 'fp32') torch.push(timeTorch(cut.folder, sequencesFile, THREADS, TORCH_REPEATS, blas));
    }
  }
  const flops = forwardFlops(cut.spec, sequences);
  return PRECISIONS.map((precision) => {
    const ratios = torch.map((t, round) => t.median_s / ours.get(precision)![round]);
    const middle = ratios.map((_, r) => r).sort((a, b) => ratios[a] - ratios[b])[Math.floor(ratios.length / 2)];
    const seconds = ours.get(precision)![middle];
    const bar = precision === 'fp32' ? 1.5 : 4;
    const ofPeak = (100 * flops) / seconds / 1e9 / peaks.get(precision)!;
    const beside = precision === 'int8' ? `; ${agreement}` : '';
    return (
      `${name} ${cut.spec.layers.length}-layer cut, ${TORCH_TOKENS} tokens, ${THREADS} threads, loss + MoE captures: ${precision} ${(TORCH_TOKENS / seconds).toFixed(0)} tok/s ` +
      `against PyTorch eager fp32 ${(TORCH_TOKENS / torch[middle].median_s).toFixed(0)} tok/s (${torch[middle].policy}, ${torch[middle].blas}; loss ${torch[middle].mean_loss.toFixed(5)}): ` +
      `${ratios[middle].toFixed(2)}x (rounds ${ratios.map((r) => r.toFixed(2)).join(' ')}, load ${loads.join(' ')}), ${ofPeak.toFixed(0)}% of the ${precision} MatMul peak; bar ${bar}x: ${ratios[middle] >= bar ? 'PASS' : 'FAIL'}${beside}`
    );
  });
}

function memoryVerdict(name: string, precision: Precision, stream: ChildOutcome): string {
  const bar = BUDGET + 0.5 * GB;
  const what = `${name} ${precision} streamed: peak RSS ${fmtGB(stream.peakRss)}, bar budget + 0.5 GB = ${fmtGB(bar)}`;
  if (stream.failure) return `${what}: FAIL (${stream.failure})`;
  return `${what}: ${stream.peakRss <= bar ? 'PASS' : 'FAIL'}`;
}

/** Throughput per layer: tokens x layers / seconds, streamed (opening included) against the resident cut's forward. */
function streamingVerdict(name: string, precision: Precision, resident: ChildOutcome, stream: ChildOutcome, cutLayers: number, layers: number): string {
  if (!resident.result || !stream.result) return `${name} ${precision} streaming cost: not measured (${resident.failure ?? stream.failure})`;
  const residentRate = (PROFILE_TOKENS * cutLayers) / resident.result.seconds;
  const streamRate = (PROFILE_TOKENS * layers) / (stream.result.openSeconds + stream.result.seconds);
  const ratio = streamRate / residentRate;
  return `${name} ${precision} streaming cost: ${streamRate.toFixed(0)} layer-tokens/s streamed against ${residentRate.toFixed(0)} resident (${cutLayers}-layer cut): ${(100 * ratio).toFixed(0)}%, bar 75%: ${ratio >= 0.75 ? 'PASS' : 'FAIL'}`;
}

function agreementOfFiles(fp32File: string, int8File: string, streamed: Map<Precision, ChildOutcome>): Agreement | undefined {
  const fp32 = streamed.get('fp32')?.result;
  const int8 = streamed.get('int8')?.result;
  if (!fp32?.topK || !int8?.topK || !existsSync(fp32File) || !existsSync(int8File)) return undefined;
  const read = (file: string, topK: number[]) => {
    const all = new Int32Array(readFileSync(file).buffer.slice(0));
    const perLayer = all.length / topK.length;
    return topK.map((_, layer) => all.subarray(layer * perLayer, (layer + 1) * perLayer));
  };
  const { agreeing, slots } = topKAgreement(read(fp32File, fp32.topK), read(int8File, int8.topK), fp32.topK);
  return { topKAgreement: agreeing / slots, slots };
}

/**
 * Runs `c` in a child process (its own peak RSS; one model at a time), polling its resident memory and
 * killing it above `rssLimit`: a run that outgrows the budget must not take the machine down with it.
 */
function runChild(c: Case, rssLimit: number): Promise<ChildOutcome> {
  return new Promise((resolvePromise) => {
    const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', __filename, '--case', JSON.stringify(c)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
    let polledPeak = 0;
    let killedAt: number | undefined;
    const poll = setInterval(() => {
      const rss = residentBytes(child.pid!);
      polledPeak = Math.max(polledPeak, rss);
      if (rss > rssLimit && killedAt === undefined) {
        killedAt = rss;
        child.kill('SIGKILL');
      }
    }, 200);
    child.on('close', (code, signal) => {
      clearInterval(poll);
      if (killedAt !== undefined) return resolvePromise({ peakRss: polledPeak, failure: `killed at ${fmtGB(killedAt)} resident, over the ${fmtGB(rssLimit)} limit: does the runtime keep to memoryBudget?` });
      if (code !== 0) return resolvePromise({ peakRss: polledPeak, failure: `exited with ${code ?? signal}: ${stderr.trim().split('\n').slice(-3).join(' | ')}` });
      const result = JSON.parse(stdout.trim().split('\n').pop()!) as CaseResult;
      resolvePromise({ result, peakRss: Math.max(polledPeak, result.peakRss) });
    });
  });
}

/** The child side of runChild. */
async function runCase(c: Case): Promise<void> {
  const sequences = (JSON.parse(readFileSync(c.sequencesFile, 'utf8')) as number[][]).map((s) => Int32Array.from(s));
  // memoryBudget is the layer-streaming runtime's option (issue #13); a runtime without it ignores it.
  const options: RuntimeOptions & { memoryBudget: number } = { threads: THREADS, memoryBudget: c.memoryBudget };
  if (c.kind === 'agreement') {
    const agreement = await measurePrecisionAgreement(c.folder, sequences, options);
    console.log(JSON.stringify({ openSeconds: 0, seconds: 0, peakRss: peakRssBytes(), agreement } satisfies CaseResult));
    return;
  }
  let start = performance.now();
  const runtime = await ModelRuntime.open(c.folder, { ...options, precision: c.precision, ...(c.kind === 'profile' && c.writeAhead === false ? { writeAhead: false } : {}) });
  const openSeconds = (performance.now() - start) / 1000;
  try {
    if (c.kind === 'profile') {
      if (c.warmUp) await runtime.forward({ sequences: sequences.slice(0, 1), outputs: { moe: true } });
      start = performance.now();
      const result = await runtime.forward({ sequences, outputs: { moe: true } });
      const seconds = (performance.now() - start) / 1000;
      const { selected, topK } = selectedByLayer(result);
      writeFileSync(c.selectedFile, Buffer.concat(selected.map((s) => Buffer.from(s.buffer, s.byteOffset, s.byteLength))));
      console.log(JSON.stringify({ openSeconds, seconds, peakRss: peakRssBytes(), topK } satisfies CaseResult));
      return;
    }
    const request = { sequences, outputs: { loss: true, moe: true } };
    let result = await runtime.forward(request); // warm-up
    const times: number[] = [];
    for (let i = 0; i < c.repeats; i++) {
      start = performance.now();
      result = await runtime.forward(request);
      times.push((performance.now() - start) / 1000);
    }
    console.log(JSON.stringify({ openSeconds, seconds: times.sort((a, b) => a - b)[Math.floor(times.length / 2)], peakRss: peakRssBytes(), meanLoss: meanLoss(result) } satisfies CaseResult));
  } finally {
    await runtime.close();
  }
}

async function writeOnce(folder: string, options: RandomCheckpointOptions): Promise<WrittenCheckpoint> {
  if (existsSync(join(folder, 'model.safetensors.index.json'))) return loaded(folder);
  const started = performance.now();
  process.stdout.write(`writing ${folder} ... `);
  const written = await writeRealShapeCheckpoint(folder, options);
  console.log(`${fmtGB(written.bytes)} in ${((performance.now() - started) / 1000).toFixed(0)} s`);
  return written;
}

/** A checkpoint written by an earlier run (BENCH_REAL_DIR), read back from its files. */
function loaded(folder: string): WrittenCheckpoint {
  const config = JSON.parse(readFileSync(join(folder, 'config.json'), 'utf8')) as Record<string, unknown>;
  const index = JSON.parse(readFileSync(join(folder, 'model.safetensors.index.json'), 'utf8')) as { metadata: { total_size: number }; weight_map: Record<string, string> };
  return { folder, spec: parseModelConfig(config), config, bytes: index.metadata.total_size, weightMap: index.weight_map };
}

function randomSequences(count: number, vocab: number, seed: number): Int32Array[] {
  const prng = new Prng(seed);
  return Array.from({ length: Math.max(1, Math.round(count)) }, () => Int32Array.from({ length: SEQUENCE_LENGTH }, () => Math.floor(prng.next() * vocab)));
}

function writeSequences(root: string, name: string, sequences: Int32Array[]): string {
  const file = join(root, `${name}.tokens.json`);
  writeFileSync(file, JSON.stringify(sequences.map((s) => [...s])));
  return file;
}

/** The head's product, which a profile (no loss, no logits) does not run. */
function headFlops(spec: ModelSpec, tokens: number): number {
  return 2 * tokens * spec.hiddenSize * spec.vocabSize;
}

function residentBytes(pid: number): number {
  try {
    const kib = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kib ? Number(kib) * 1024 : 0;
  } catch {
    return 0; // the process has just exited
  }
}

/** MemAvailable: what the kernel can give without swapping, the limit for resident runs on a shared machine. */
function availableMemory(): number {
  const kib = /^MemAvailable:\s+(\d+) kB/m.exec(existsSync('/proc/meminfo') ? readFileSync('/proc/meminfo', 'utf8') : '')?.[1];
  return kib ? Number(kib) * 1024 : totalmem();
}

function printProfiles(rows: ProfileRow[], peaks: Map<Precision, number>): void {
  const header = ['model', 'precision', 'run', 'layers', 'tokens', 'open s', 'forward s', 'layer-tok/s', 'GFLOP/s', '% of peak', 'peak RSS', 'load', 'note'];
  const lines = rows.map((r) => {
    const result = r.outcome.result;
    const seconds = result ? result.seconds + (r.run === 'streamed' ? result.openSeconds : 0) : undefined;
    return [
      r.model,
      r.precision,
      r.run,
      String(r.layers),
      String(r.tokens),
      result ? result.openSeconds.toFixed(1) : '-',
      result ? result.seconds.toFixed(1) : '-',
      seconds ? ((r.tokens * r.layers) / seconds).toFixed(0) : '-',
      seconds ? (r.flops / seconds / 1e9).toFixed(0) : '-',
      seconds ? `${((100 * r.flops) / seconds / 1e9 / peaks.get(r.precision)!).toFixed(0)}%` : '-',
      fmtGB(r.outcome.peakRss),
      r.load,
      r.outcome.failure ?? '',
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const format = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padStart(widths[i]))).join('  ');
  console.log('\n' + format(header));
  for (const line of lines) console.log(format(line));
  console.log('profile: a forward with every MoE capture, no head. resident cut: the first layers, all resident, forward timed after a');
  console.log('one-sequence warm-up; streamed: the whole model under the budget, layer-tok/s over opening + forward (what a user waits for).');
  console.log('% of peak: the forward\'s FLOPs (active experts only) over onnxruntime\'s MatMul peak in the same precision.');
}

function loadLine(when: string): string {
  return `load average at ${when}: ${loadavg().map((l) => l.toFixed(1)).join(' ')} (timings on a shared machine are noisy)`;
}

function fmtGB(bytes: number): string {
  return `${(bytes / GB).toFixed(2)} GB`;
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
