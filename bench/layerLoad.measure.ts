/**
 * One decoder layer loaded as the runtime loads it, phase by phase (reading and widening, the rest of the
 * serialisation, onnxruntime's session creation), in fp32 and int8, twice each. Writes a 1-layer OLMoE-1B-7B-
 * shaped bf16 checkpoint to CK (default a folder in the temp dir, kept for the next run; ARCH=qwen3 for Qwen3-30B-A3B's shapes) on first use.
 * Run: node --import tsx bench/layerLoad.measure.ts   (PREC=int8 for one precision)
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { writeRealShapeCheckpoint } from './realShapeCheckpoint';
import { parseModelConfig } from '../server/src/checkpoint/config';
import { openWeights } from '../server/src/checkpoint';
import { buildLayerGraph } from '../server/src/runtime/layerGraph';
import { layerWeights } from '../server/src/runtime/layerWeights';

const folder = process.env.CK ?? path.join(os.tmpdir(), 'moe-layer-load');
async function main() {
  const arch = process.env.ARCH ?? 'olmoe';
  const opts = arch === 'olmoe'
    ? { architecture: 'OlmoeForCausalLM', seed: 1, vocabSize: 50304, hiddenSize: 2048, numLayers: 1, numHeads: 16, numKvHeads: 16, numExperts: 64, topK: 8, expertIntermediateSize: 1024 }
    : { architecture: 'Qwen3MoeForCausalLM', seed: 2, vocabSize: 151936, hiddenSize: 2048, numLayers: 1, numHeads: 32, numKvHeads: 4, headDim: 128, numExperts: 128, topK: 8, expertIntermediateSize: 768, ropeTheta: 1e6 };
  if (!fs.existsSync(path.join(folder, 'config.json'))) { const t = Date.now(); await writeRealShapeCheckpoint(folder, opts as any); console.log('wrote', (Date.now() - t) / 1000); }
  const config = JSON.parse(fs.readFileSync(path.join(folder, 'config.json'), 'utf8'));
  const spec = parseModelConfig(config);
  const weights: any = await (openWeights as any)(folder, spec);
  let readS = 0; let rawS = 0;
  const timed = { readFloat32: async (n: string) => { const t = performance.now(); const v = await weights.readFloat32(n); readS += (performance.now() - t) / 1000; return v; } };
  const source = new Proxy(weights, { get: (o, k) => (k === "readRaw" ? async (n: string) => { const t = performance.now(); const v = await weights.readRaw(n); rawS += (performance.now() - t) / 1000; return v; } : k === "readFloat32" ? timed.readFloat32 : typeof o[k] === 'function' ? o[k].bind(o) : o[k]) });
  for (const precision of (process.env.PREC ?? 'fp32,int8').split(',')) {
    for (let rep = 0; rep < 2; rep++) {
      readS = 0; rawS = 0;
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'll-'));
      const t0 = performance.now();
      const g = buildLayerGraph(spec, spec.layers[0], layerWeights(spec, source, spec.layers[0]), undefined, { precision: precision as any });
      const model: any = await g.serialize({ externalDataDir: dir, externalDataThreshold: 32 << 20 });
      const t1 = performance.now();
      const s = await ort.InferenceSession.create(model.modelPath, { intraOpNumThreads: 2, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all', enableCpuMemArena: false, extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } } } as any);
      const t2 = performance.now();
      console.log(precision, `rep ${rep}: read+decode fp32 ${readS.toFixed(2)} s, raw ${rawS.toFixed(2)} s, serialize total ${((t1 - t0) / 1000).toFixed(2)} s (other JS+write ${((t1 - t0) / 1000 - readS - rawS).toFixed(2)}), session ${((t2 - t1) / 1000).toFixed(2)} s, weights ${(g.weightBytes() / 1e9).toFixed(2)} GB`);
      await s.release();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
}
main();
