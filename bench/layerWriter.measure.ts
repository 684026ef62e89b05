/**
 * What writing a layer on a second thread hides (layerWriter.ts): one layer's forward (every MoE capture,
 * TOKENS tokens, default 8192) and one write of the same layer (read, widen or quantize, external data)
 * timed alone and then at once, on the 1-layer Qwen3-30B-A3B-shaped checkpoint of layerLoad.measure.ts
 * (CK, default the temp dir's moe-layer-load: run `ARCH=qwen3 node --import tsx bench/layerLoad.measure.ts` first).
 * Run: PREC=int8 node --import tsx bench/layerWriter.measure.ts
 */
import { Worker, isMainThread, workerData, parentPort } from 'node:worker_threads';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ModelRuntime } from '../server/src/runtime/modelRuntime';
import { Prng } from '../test/support/prng';
import { parseModelConfig } from '../server/src/checkpoint/config';
import { openWeights } from '../server/src/checkpoint';
import { checkpointLayerGraph } from '../server/src/runtime/layerGraph';
const folder = process.env.CK ?? path.join(os.tmpdir(), 'moe-layer-load');
async function serializeOnce(precision: string) {
  const spec = parseModelConfig(JSON.parse(fs.readFileSync(path.join(folder, 'config.json'), 'utf8')));
  const weights: any = await (openWeights as any)(folder, spec);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'layer-write-'));
  const t = performance.now();
  const g = checkpointLayerGraph(spec, weights, 0, precision as any);
  await g.serialize({ externalDataDir: dir, externalDataThreshold: 32 << 20 });
  const s = (performance.now() - t) / 1000;
  fs.rmSync(dir, { recursive: true, force: true });
  return s;
}
if (!isMainThread) {
  serializeOnce(workerData.precision).then((s) => parentPort!.postMessage(s));
} else {
  (async () => {
    const precision = (process.env.PREC ?? 'int8') as any;
    const runtime = await ModelRuntime.open(folder, { threads: 2, precision, memoryBudget: 20e9 } as any);
    const rng = new Prng(5);
    const sequences = Array.from({ length: Number(process.env.TOKENS ?? 8192) / 256 }, () => Int32Array.from({ length: 256 }, () => Math.floor(rng.next() * 150000)));
    await runtime.forward({ sequences: sequences.slice(0, 4), outputs: { moe: true } });
    const ser = () => new Promise<number>((res) => new Worker(`require('tsx/cjs'); require(${JSON.stringify(__filename)})`, { eval: true, workerData: { precision } }).once('message', res));
    for (let r = 0; r < 2; r++) {
      let t = performance.now(); await runtime.forward({ sequences, outputs: { moe: true } }); const alone = (performance.now() - t) / 1000;
      const serAlone = await ser();
      t = performance.now(); const [_, serWith] = await Promise.all([runtime.forward({ sequences, outputs: { moe: true } }), ser()]); const both = (performance.now() - t) / 1000;
      console.log(`${precision} forward alone ${alone.toFixed(2)} s, serialize alone ${serAlone.toFixed(2)} s; together: wall ${both.toFixed(2)} s (serialize ${serWith.toFixed(2)}); sequential would be ${(alone + serAlone).toFixed(2)}`);
    }
    await runtime.close();
  })();
}
