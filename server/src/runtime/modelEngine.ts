import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import type { LayerSpec, ModelSpec, WeightSource } from '../checkpoint/modelSpec';
import { ForwardCancelledError, ForwardRequest, ForwardResult, MoeLayerCapture, SequenceResult } from './forwardTypes';
import { GraphBuilder, SerializedModel } from './graphBuilder';
import { buildHeadGraph, HeadIO } from './headGraph';
import { buildLayerGraph, LayerIO } from './layerGraph';
import { layerWeights, mergeExperts } from './layerWeights';
import { PrefixCache, batchKey } from './prefixCache';
import { firstChangedLayer, resolveLayerPlan, ResolvedLayerPlan } from './runtimePlan';
import { BatchTablesCache } from './positionTables';

export interface EngineOptions {
  /** onnxruntime intra-op threads (default 1). */
  threads?: number;
  /** Where large graphs' weights go as ONNX external data (default: a scratch folder per graph, removed once loaded). */
  externalDataDir?: string;
  /** Layers with more weight bytes than this are loaded through external data (default 32 MiB). */
  externalDataThreshold?: number;
  /** Memory for hidden states cached in front of the first layer a plan changes (default 256 MiB). */
  prefixCacheBytes?: number;
}

const DEFAULT_MAX_BATCH_TOKENS = 2048;
/**
 * Weights handed over in the protobuf stay resident twice (onnxruntime keeps its parsed copy beside the
 * prepacked one: about 2.5x the weights per layer, measured); from page-aligned external data it maps
 * the file and keeps only the prepacked copy (1x). So every layer above a few MiB takes the file route.
 */
const DEFAULT_EXTERNAL_DATA_THRESHOLD = 32 * 1024 * 1024;
/**
 * Head rows per onnxruntime call: bounds the [rows, vocab] logits and log-softmax buffers to about 32 MiB
 * (256 rows of a 32k vocabulary), while a small vocabulary still goes in one call.
 */
const HEAD_CHUNK_BYTES = 32 * 1024 * 1024;

interface Batch {
  indices: number[];
  lengths: number[];
  padded: number;
}

/**
 * The model as onnxruntime sessions: one per decoder layer plus a head, with the embedding lookup in JS.
 * Per-layer sessions keep each graph under the protobuf limit, expose every MoE layer's inputs for free,
 * and let a plan replace one layer (merging) or resume from cached hidden states (any plan).
 * Synchronous under the hood: run it inside a worker thread. It reads `weights` again for merged layers,
 * so the caller keeps the WeightSource open until after close().
 */
export class ModelEngine {
  private readonly mergedSessions = new Map<number, { key: string; session: ort.InferenceSession }>();
  private readonly prefixCache: PrefixCache;
  private readonly batchTables: BatchTablesCache;

  private constructor(
    readonly spec: ModelSpec,
    private readonly weights: WeightSource,
    private readonly embedding: Float32Array,
    private readonly layerSessions: ort.InferenceSession[],
    private readonly head: ort.InferenceSession,
    private readonly options: EngineOptions,
  ) {
    this.prefixCache = new PrefixCache(options.prefixCacheBytes ?? 256 * 1024 * 1024);
    this.batchTables = new BatchTablesCache(spec.attention.headDim, spec.attention.ropeTheta);
  }

  static async create(spec: ModelSpec, weights: WeightSource, options: EngineOptions = {}): Promise<ModelEngine> {
    const sessions: ort.InferenceSession[] = [];
    try {
      for (const layer of spec.layers) sessions.push(await loadGraph(buildLayerGraph(spec, layer, layerWeights(spec, weights, layer)), options));
      const embedding = await weights.readFloat32(spec.tensors.embedTokens);
      const lmHead = spec.tensors.lmHead ? () => weights.readFloat32(spec.tensors.lmHead!) : embedding;
      const head = await loadGraph(buildHeadGraph(spec, () => weights.readFloat32(spec.tensors.finalNorm), lmHead), options);
      return new ModelEngine(spec, weights, embedding, sessions, head, options);
    } catch (error) {
      for (const session of sessions) await session.release();
      throw error;
    }
  }

  async forward(request: ForwardRequest, shouldStop: () => boolean = () => false): Promise<ForwardResult> {
    const { spec } = this;
    request.sequences.forEach((s, i) => {
      if (s.length === 0) throw new Error(`sequence ${i} is empty`);
      s.forEach((id) => (id < 0 || id >= spec.vocabSize) && fail(`sequence ${i} has token ${id} outside the vocabulary (${spec.vocabSize})`));
    });
    const plans = spec.layers.map((layer) => (layer.kind === 'moe' ? resolveLayerPlan(layer.index, layer.moe, request.plan?.layers[layer.index]) : undefined));
    const sessions = await Promise.all(spec.layers.map((layer, i) => this.sessionFor(layer, plans[i])));
    const results: SequenceResult[] = request.sequences.map(() => ({}));
    // Cached prefixes are the unchanged model's hidden states, valid only while nothing before them is captured.
    const usePrefixCache = !request.outputs.moe;
    const firstChanged = firstChangedLayer(request.plan, spec.layers.length);
    let tokens = 0;
    for (const batch of makeBatches(request.sequences, request.maxBatchTokens ?? DEFAULT_MAX_BATCH_TOKENS)) {
      if (shouldStop()) throw new ForwardCancelledError();
      const ids = batch.indices.map((i) => request.sequences[i]);
      const key = usePrefixCache ? batchKey(ids) : undefined;
      const cached = key ? this.prefixCache.lookup(key, firstChanged) : undefined;
      const { layout, cos, sin, bias } = this.batchTables.get(batch.lengths, batch.padded);
      let hidden = cached?.hidden ?? this.embed(ids);
      const shared = {
        [LayerIO.tokenSlots]: new ort.Tensor('int64', layout.tokenSlots, [layout.tokenSlots.length]),
        [LayerIO.gridRows]: new ort.Tensor('int64', layout.gridRows, [layout.gridRows.length]),
        [LayerIO.ropeCos]: new ort.Tensor('float32', cos, [batch.padded, spec.attention.headDim]),
        [LayerIO.ropeSin]: new ort.Tensor('float32', sin, [batch.padded, spec.attention.headDim]),
        [LayerIO.attentionBias]: new ort.Tensor('float32', bias, [ids.length, 1, 1, batch.padded, batch.padded]),
      };
      for (let l = cached?.layer ?? 0; l < spec.layers.length; l++) {
        if (shouldStop()) throw new ForwardCancelledError();
        if (key && l === firstChanged) this.prefixCache.store(key, l, hidden);
        const feeds: Record<string, ort.Tensor> = { ...shared, [LayerIO.hidden]: new ort.Tensor('float32', hidden, [layout.tokenSlots.length, spec.hiddenSize]) };
        const plan = plans[l];
        const fetches: string[] = [LayerIO.hiddenOut];
        if (plan) {
          Object.assign(feeds, planFeeds(plan, spec.layers[l]));
          if (request.outputs.moe) fetches.push(LayerIO.routerLogits, LayerIO.selectedExperts, LayerIO.gateWeights, LayerIO.expertOutputNorms);
          if (request.outputs.moe && request.outputs.moeInputs) fetches.push(LayerIO.moeInput);
        }
        const out = await sessions[l].run(feeds, fetches);
        hidden = out[LayerIO.hiddenOut].data as Float32Array;
        if (plan && request.outputs.moe) this.collectMoe(results, batch, layout.offsets, l, plan, out, request.outputs.moeInputs === true);
      }
      if (key && firstChanged === spec.layers.length) this.prefixCache.store(key, firstChanged, hidden);
      await this.runHead(results, batch, layout.offsets, ids, hidden, request.outputs);
      tokens += batch.lengths.reduce((a, b) => a + b, 0);
    }
    return { sequences: results, tokens };
  }

  async close(): Promise<void> {
    for (const session of [...this.layerSessions, this.head, ...[...this.mergedSessions.values()].map((m) => m.session)]) await session.release();
    this.mergedSessions.clear();
    this.prefixCache.clear();
  }

  /** The batch's tokens' embeddings, packed: sequence after sequence, no padding. */
  private embed(ids: Int32Array[]): Float32Array {
    const H = this.spec.hiddenSize;
    const hidden = new Float32Array(ids.reduce((sum, s) => sum + s.length, 0) * H);
    let row = 0;
    for (const sequence of ids) for (const id of sequence) hidden.set(this.embedding.subarray(id * H, (id + 1) * H), row++ * H);
    return hidden;
  }

  /** Merged experts need their own weights, so that layer gets its own session, built once per merge matrix. */
  private async sessionFor(layer: LayerSpec, plan: ResolvedLayerPlan | undefined): Promise<ort.InferenceSession> {
    if (!plan?.mergeMatrix || layer.kind !== 'moe') return this.layerSessions[layer.index];
    const key = JSON.stringify([plan.mergeMatrix, plan.outputScale]);
    const current = this.mergedSessions.get(layer.index);
    if (current?.key === key) return current.session;
    await current?.session.release();
    this.mergedSessions.delete(layer.index);
    const original = layerWeights(this.spec, this.weights, layer);
    const experts = mergeExperts(original.experts!, plan.mergeMatrix, plan.outputScale);
    const session = await loadGraph(buildLayerGraph(this.spec, layer, original, experts), this.options);
    this.mergedSessions.set(layer.index, { key, session });
    return session;
  }

  private collectMoe(results: SequenceResult[], batch: Batch, offsets: number[], layer: number, plan: ResolvedLayerPlan, out: ort.InferenceSession.OnnxValueMapType, withInputs: boolean): void {
    const E = plan.routedExperts;
    const k = plan.topK;
    const H = this.spec.hiddenSize;
    const logits = out[LayerIO.routerLogits].data as Float32Array;
    const selected = out[LayerIO.selectedExperts].data as Int32Array;
    const gates = out[LayerIO.gateWeights].data as Float32Array;
    const norms = out[LayerIO.expertOutputNorms].data as Float32Array;
    const inputs = withInputs ? (out[LayerIO.moeInput].data as Float32Array) : undefined;
    batch.indices.forEach((sequenceIndex, b) => {
      const len = batch.lengths[b];
      const row = offsets[b];
      const capture: MoeLayerCapture = {
        layer,
        numExperts: E,
        topK: k,
        routerLogits: logits.slice(row * E, (row + len) * E),
        selectedExperts: selected.slice(row * k, (row + len) * k),
        gateWeights: gates.slice(row * k, (row + len) * k),
        expertOutputNorms: norms.slice(row * k, (row + len) * k),
        inputs: inputs?.slice(row * H, (row + len) * H),
      };
      (results[sequenceIndex].moe ??= []).push(capture);
    });
  }

  /** Runs the head on the rows that matter only: last tokens for 'last' logits, every real token otherwise. */
  private async runHead(results: SequenceResult[], batch: Batch, offsets: number[], ids: Int32Array[], hidden: Float32Array, outputs: ForwardRequest['outputs']): Promise<void> {
    const H = this.spec.hiddenSize;
    const V = this.spec.vocabSize;
    const everyToken = outputs.logits === 'all' || outputs.loss === true;
    if (!everyToken && outputs.logits !== 'last') return;
    // Every token: the head's rows are the packed rows as they are. Last tokens: one row per sequence.
    const rows: { b: number; t: number }[] = [];
    batch.lengths.forEach((len, b) => {
      for (let t = everyToken ? 0 : len - 1; t < len; t++) rows.push({ b, t });
    });
    const logits = outputs.logits ? new Float32Array(rows.length * V) : undefined;
    const nll = new Float32Array(rows.length);
    const chunkRows = Math.max(64, Math.floor(HEAD_CHUNK_BYTES / (4 * V)));
    for (let start = 0; start < rows.length; start += chunkRows) {
      const chunk = rows.slice(start, start + chunkRows);
      const input = everyToken ? hidden.subarray(start * H, (start + chunk.length) * H) : new Float32Array(chunk.length * H);
      const targets = new Int32Array(chunk.length);
      chunk.forEach(({ b, t }, r) => {
        if (!everyToken) input.set(hidden.subarray((offsets[b] + t) * H, (offsets[b] + t + 1) * H), r * H);
        targets[r] = t + 1 < batch.lengths[b] ? ids[b][t + 1] : 0;
      });
      const fetches = [...(outputs.loss ? [HeadIO.nll] : []), ...(outputs.logits ? [HeadIO.logits] : [])];
      const out = await this.head.run({ [HeadIO.hidden]: new ort.Tensor('float32', input, [chunk.length, H]), [HeadIO.targets]: new ort.Tensor('int32', targets, [chunk.length]) }, fetches);
      if (outputs.loss) nll.set(out[HeadIO.nll].data as Float32Array, start);
      if (logits) logits.set(out[HeadIO.logits].data as Float32Array, start * V);
    }
    let row = 0;
    batch.indices.forEach((sequenceIndex, b) => {
      const len = batch.lengths[b];
      const count = everyToken ? len : 1;
      const result = results[sequenceIndex];
      if (outputs.loss) result.loss = nll.slice(row, row + len - 1);
      if (outputs.logits === 'all') result.logits = logits!.slice(row * V, (row + len) * V);
      if (outputs.logits === 'last') result.logits = logits!.slice((row + count - 1) * V, (row + count) * V);
      row += count;
    });
  }
}

function planFeeds(plan: ResolvedLayerPlan, layer: LayerSpec): Record<string, ort.Tensor> {
  const E = layer.kind === 'moe' ? layer.moe.numExperts : 0;
  return {
    [LayerIO.routerMap]: new ort.Tensor('float32', plan.routerMapTransposed, [E, plan.routedExperts]),
    [LayerIO.expertBias]: new ort.Tensor('float32', plan.expertBias, [plan.routedExperts]),
    [LayerIO.topK]: new ort.Tensor('int64', BigInt64Array.of(BigInt(plan.topK)), [1]),
    [LayerIO.adaptiveThreshold]: new ort.Tensor('float32', Float32Array.of(plan.adaptiveThreshold), [1]),
  };
}

/** Serialises a graph (through external data in a scratch folder when it is large) and loads it. */
async function loadGraph(graph: GraphBuilder, options: EngineOptions): Promise<ort.InferenceSession> {
  const externalDataThreshold = options.externalDataThreshold ?? DEFAULT_EXTERNAL_DATA_THRESHOLD;
  const scratch = !options.externalDataDir && graph.weightBytes() > externalDataThreshold ? fs.mkdtempSync(path.join(os.tmpdir(), 'moe-runtime-')) : undefined;
  const model = await graph.serialize({ externalDataDir: options.externalDataDir ?? scratch, externalDataThreshold });
  try {
    return await createSession(model, options);
  } finally {
    // Loaded and prepacked, the files are no longer read. Where a mapping still holds them open (Windows)
    // removal fails, and they are left to the OS's temp cleaning.
    try {
      if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
      else if (model.kind === 'file') for (const file of [model.modelPath, model.weightsPath]) fs.rmSync(file, { force: true });
    } catch {
      // see above
    }
  }
}

function createSession(model: SerializedModel, options: EngineOptions): Promise<ort.InferenceSession> {
  const sessionOptions: ort.InferenceSession.SessionOptions = {
    intraOpNumThreads: options.threads ?? 1,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    // No busy-waiting between ops: it burns the editor's CPU and, on a loaded machine, made two threads
    // slower than one (measured: 2-thread MatMul 78 ms spinning vs 52 ms not, 1 thread 50 ms).
    extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
  };
  return model.kind === 'bytes' ? ort.InferenceSession.create(model.bytes, sessionOptions) : ort.InferenceSession.create(model.modelPath, sessionOptions);
}

/** Groups sequences in request order so that batch size x longest length stays within the token budget. */
function makeBatches(sequences: Int32Array[], maxBatchTokens: number): Batch[] {
  const batches: Batch[] = [];
  let current: Batch = { indices: [], lengths: [], padded: 0 };
  sequences.forEach((sequence, index) => {
    const padded = Math.max(current.padded, sequence.length);
    if (current.indices.length > 0 && padded * (current.indices.length + 1) > maxBatchTokens) {
      batches.push(current);
      current = { indices: [], lengths: [], padded: 0 };
    }
    current.indices.push(index);
    current.lengths.push(sequence.length);
    current.padded = Math.max(current.padded, sequence.length);
  });
  if (current.indices.length) batches.push(current);
  return batches;
}

function fail(message: string): never {
  throw new Error(message);
}
