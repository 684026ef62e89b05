/**
 * Profiling on the demo model:
 * (a) throughput: a bare runtime forward with MoE capture (pre-tokenised, two batches in flight, no
 *     statistics) against profileDataset over the same rows (reading, tokenising, statistics, saving).
 *     Bar: profiling >= 90% of bare.
 * (b) memory: peak RSS of profiling 10k, 100k and 1M tokens of a synthetic dataset (demo rows repeated),
 *     each in its own process, and the largest JS heap seen. onnxruntime's arena grows with the batch
 *     shapes it has seen during the first ~60k tokens, then stays; so flat means 1M <= 1.1 x 100k + 20 MB.
 * (c) hover latency over LSP while a profile runs: dist/server.js (build first), a profiled dataset
 *     open, a profile of the 1M-token dataset running, 200 hovers. Bar: p95 < 50 ms.
 * Run: node --expose-gc --import tsx bench/profile.bench.ts
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { CancellationTokenSource, DidOpenTextDocumentNotification, HoverRequest } from 'vscode-languageserver-protocol/node';
import { ProfileDatasetRequest, TokenRoutesRequest } from '../common/protocol';
import { loadTokenizer } from '../server/src/checkpoint';
import { profileDataset, RuntimePool, modelIdentity } from '../server/src/profile/run';
import { sendInitialized, startServer } from '../test/support/lspClient';

const ROOT = path.resolve(__dirname, '..');
const MODEL = path.join(ROOT, 'demo/model');
const DOMAINS = ['code', 'prose', 'arithmetic', 'records'];
const TEXT = { kind: 'field', field: 'text' } as const;
const THREADS = 1;
const MB = 1024 * 1024;
const SETTINGS = { sequenceLength: 256, maxRows: null, tokenRecords: 4096, onMalformed: 'skip', threads: THREADS } as const;

interface Result {
  measure: string;
  value: string;
  bar: string;
  pass: boolean;
}

async function main(): Promise<void> {
  const childFile = process.argv[process.argv.indexOf('--memory-child') + 1];
  if (process.argv.includes('--memory-child')) return memoryChild(childFile);

  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-profile-bench-'));
  try {
    const rows = DOMAINS.flatMap((domain) => fs.readFileSync(path.join(ROOT, `demo/data/${domain}.valid.jsonl`), 'utf8').split('\n').filter((line) => line.trim() !== ''));
    const tokenizer = await loadTokenizer(MODEL);
    const tokensPerRow = rows.map((line) => Math.min(256, tokenizer.encode((JSON.parse(line) as { text: string }).text).length));
    const synthetic = (name: string, tokens: number) => {
      const file = path.join(work, name);
      const lines: string[] = [];
      for (let i = 0, sum = 0; sum < tokens; i++) {
        lines.push(rows[i % rows.length]);
        sum += tokensPerRow[i % rows.length];
      }
      fs.writeFileSync(file, lines.join('\n') + '\n');
      return file;
    };
    const results: Result[] = [];
    // Long enough that per-run fixed costs (hashing the data, aligning token offsets, saving the profile) weigh as they do on real data.
    results.push(...(await throughput(synthetic('throughput.jsonl', 200_000), work)));
    const small = synthetic('tokens-10k.jsonl', 10_000);
    const medium = synthetic('tokens-100k.jsonl', 100_000);
    const large = synthetic('tokens-1m.jsonl', 1_000_000);
    results.push(memory([small, medium, large], work));
    results.push(await hoverLatency(path.join(ROOT, 'demo/data/code.valid.jsonl'), large, work));

    console.log('\nProfiling bench (demo model, 1 inference thread)');
    console.log(`${'measure'.padEnd(46)} ${'value'.padEnd(28)} ${'bar'.padEnd(26)} result`);
    for (const result of results) console.log(`${result.measure.padEnd(46)} ${result.value.padEnd(28)} ${result.bar.padEnd(26)} ${result.pass ? 'PASS' : 'FAIL'}`);
    process.exitCode = results.every((result) => result.pass) ? 0 : 1;
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/** (a) Bare forward vs profiling on the same rows; best of three alternating runs each. */
async function throughput(file: string, workspace: string): Promise<Result[]> {
  const pool = new RuntimePool();
  try {
    const identity = await modelIdentity(MODEL);
    const { runtime, tokenizer } = await pool.get(identity, THREADS);
    const texts = fs.readFileSync(file, 'utf8').split('\n').filter((line) => line.trim() !== '').map((line) => (JSON.parse(line) as { text: string }).text);
    const sequences = (await tokenizer.tokenizeRows(texts.map((text) => ({ text, maxTokens: 256 })))).map(({ ids }) => ids);
    const batches: Int32Array[][] = [];
    for (let i = 0, current: Int32Array[] = [], tokens = 0; i < sequences.length; i++) {
      current.push(sequences[i]);
      tokens += sequences[i].length;
      if (tokens >= 2048 || i === sequences.length - 1) {
        batches.push(current);
        current = [];
        tokens = 0;
      }
    }
    const total = sequences.reduce((sum, sequence) => sum + sequence.length, 0);
    const bare = async () => {
      const started = performance.now();
      // Two batches in flight, as profiling keeps them, so the worker never waits.
      let previous: Promise<unknown> | undefined;
      for (const batch of batches) {
        const current = runtime.forward({ sequences: batch, outputs: { moe: true } });
        await previous;
        previous = current;
      }
      await previous;
      return total / ((performance.now() - started) / 1000);
    };
    const profiled = async () => {
      const started = performance.now();
      const result = await profileDataset({ datasetFile: file, modelFolder: MODEL, field: TEXT, workspaceFolder: workspace, settings: { threads: THREADS, maxRows: null }, force: true, runtimes: pool });
      if (result.profile.dataset.tokens !== total) throw new Error(`profiled ${result.profile.dataset.tokens} tokens, bare ran ${total}`);
      return total / ((performance.now() - started) / 1000);
    };
    await bare(); // warm-up
    const bareRates: number[] = [];
    const profileRates: number[] = [];
    for (let repeat = 0; repeat < 3; repeat++) {
      bareRates.push(await bare());
      profileRates.push(await profiled());
    }
    const bareBest = Math.max(...bareRates);
    const profileBest = Math.max(...profileRates);
    const ratio = profileBest / bareBest;
    console.log(`(a) ${total} tokens: bare ${bareRates.map(Math.round).join(', ')} tok/s; profiling ${profileRates.map(Math.round).join(', ')} tok/s`);
    return [
      { measure: `(a) bare forward + MoE capture (${Math.round(total / 1000)}k tok)`, value: `${Math.round(bareBest)} tok/s`, bar: '-', pass: true },
      { measure: '(a) profiling throughput', value: `${Math.round(profileBest)} tok/s (${(100 * ratio).toFixed(0)}% of bare)`, bar: '>= 90% of bare', pass: ratio >= 0.9 },
    ];
  } finally {
    await pool.close();
  }
}

/** (b) Peak RSS and JS heap of profiling each dataset in a fresh process. */
function memory(files: string[], workspace: string): Result {
  const runs = files.map((file) => {
    const child = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', __filename, '--memory-child', file, workspace], { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 * MB });
    const line = child.stdout.split('\n').find((text) => text.startsWith('{'));
    if (child.status !== 0 || !line) throw new Error(`memory child failed: ${child.stderr}`);
    const run = JSON.parse(line) as { tokens: number; peakRss: number; peakHeap: number; seconds: number };
    console.log(`(b) ${run.tokens} tokens: peak RSS ${(run.peakRss / MB).toFixed(0)} MB, peak JS heap ${(run.peakHeap / MB).toFixed(0)} MB (${run.seconds.toFixed(1)} s)`);
    return run;
  });
  const [, medium, large] = runs;
  const bar = 1.1 * medium.peakRss + 20 * MB;
  return {
    measure: '(b) peak RSS, 10k / 100k / 1M tokens',
    value: runs.map((run) => (run.peakRss / MB).toFixed(0)).join(' / ') + ' MB',
    bar: `flat: 1M <= ${(bar / MB).toFixed(0)} MB`,
    pass: large.peakRss <= bar,
  };
}

async function memoryChild(file: string): Promise<void> {
  const workspace = process.argv[process.argv.length - 1];
  const pool = new RuntimePool();
  const started = performance.now();
  let peakHeap = 0;
  try {
    const result = await profileDataset({
      datasetFile: file, modelFolder: MODEL, field: TEXT, workspaceFolder: workspace, settings: { threads: THREADS, maxRows: null }, force: true, runtimes: pool,
      outFile: path.join(workspace, `${path.basename(file)}.profile.json`),
      onProgress: () => (peakHeap = Math.max(peakHeap, process.memoryUsage().heapUsed)),
    });
    console.log(JSON.stringify({ tokens: result.profile.dataset.tokens, peakRss: process.resourceUsage().maxRSS * 1024, peakHeap, seconds: (performance.now() - started) / 1000 }));
  } finally {
    await pool.close();
  }
}

/** (c) Hover latency on a profiled dataset while the server profiles a large one. */
async function hoverLatency(profiled: string, large: string, workspace: string): Promise<Result> {
  if (!fs.existsSync(path.join(ROOT, 'dist/server.js'))) throw new Error('dist/server.js is missing: run node scripts/build.mjs first');
  const server = await startServer({ trusted: true });
  try {
    sendInitialized(server);
    const uri = pathToFileURL(profiled).toString();
    await server.connection.sendRequest(ProfileDatasetRequest.type, { uri, model: MODEL, field: TEXT, workspaceFolder: workspace, settings: SETTINGS });
    void server.connection.sendNotification(DidOpenTextDocumentNotification.type, { textDocument: { uri, languageId: 'jsonl', version: 1, text: fs.readFileSync(profiled, 'utf8') } });
    const { routes } = await server.connection.sendRequest(TokenRoutesRequest.type, { uri });
    const source = new CancellationTokenSource();
    const running = server.connection.sendRequest(ProfileDatasetRequest.type, { uri: pathToFileURL(large).toString(), model: MODEL, field: TEXT, workspaceFolder: workspace, settings: SETTINGS, force: true }, source.token).catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 3000)); // the model is loaded and batches are flowing
    const latencies: number[] = [];
    for (let i = 0; i < 200; i++) {
      const route = routes[(i * 37) % routes.length];
      const started = performance.now();
      const hover = await server.connection.sendRequest(HoverRequest.type, { textDocument: { uri }, position: route.range.start });
      latencies.push(performance.now() - started);
      if (!hover) throw new Error('a hover on a profiled token returned nothing');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    source.cancel();
    await running;
    latencies.sort((a, b) => a - b);
    const p50 = latencies[Math.floor(0.5 * latencies.length)];
    const p95 = latencies[Math.floor(0.95 * latencies.length)];
    console.log(`(c) hover latency during profiling: p50 ${p50.toFixed(1)} ms, p95 ${p95.toFixed(1)} ms, max ${latencies[latencies.length - 1].toFixed(1)} ms`);
    return { measure: '(c) hover latency while profiling (200)', value: `p50 ${p50.toFixed(1)} ms, p95 ${p95.toFixed(1)} ms`, bar: 'p95 < 50 ms', pass: p95 < 50 };
  } finally {
    await server.stop();
  }
}

void main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
