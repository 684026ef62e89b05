import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import type { LayerSpec, ModelSpec, WeightSource } from '../checkpoint/modelSpec';
import { ForwardCancelledError, ForwardProgress, ForwardRequest, ForwardResult, ForwardVariantsRequest, MoeLayerCapture, SequenceResult } from './forwardTypes';
import { GraphBuilder, SerializedModel } from './graphBuilder';
import { EmbeddingRows } from './embeddingRows';
import { buildHeadGraph, headBiases, HeadIO } from './headGraph';
import { ExpertOutputsIO, buildExpertOutputsGraph } from './expertOutputsGraph';
import { HiddenStore } from './hiddenStore';
import { buildLayerGraph, checkpointLayerGraph, LayerIO } from './layerGraph';
import { layerWeights, mergedMxfp4, mergeExperts, tensorReader } from './layerWeights';
import { layerWeightBytes, MemoryPlan, mergedLayerBytes, planMemory, Precision } from './memoryBudget';
import { loadHeld, MemoryLedger } from './memoryLedger';
import { PrefixCache, batchKey } from './prefixCache';
import { LayerResidency } from './residency';
import { LayerWriter, removeScratch } from './layerWriter';
import { int8WeightLevels } from './int8Kernel';
import { neuronOrderRefusal } from './neuronOrder';
import { firstChangedLayer, resolveLayerPlan, ResolvedLayerPlan } from './runtimePlan';

/** What a merged layer's session is built from. */
type MergedLayer = Pick<ResolvedLayerPlan, 'outputScale' | 'neuronOrder'> & { mergeMatrix: number[][] };
import { BatchTablesCache, rotaryDimOf } from './positionTables';

export interface EngineOptions {
  /** onnxruntime intra-op threads (default 1). */
  threads?: number;
  /** Where large graphs' weights go as ONNX external data (default: a scratch folder per graph, removed once loaded). */
  externalDataDir?: string;
  /** Layers with more weight bytes than this are loaded through external data (default 32 MiB). */
  externalDataThreshold?: number;
  /** Memory for hidden states cached in front of the first layer a plan changes (default 256 MiB). */
  prefixCacheBytes?: number;
  /** Bytes the runtime may hold; decides which layers stay resident (default `defaultMemoryBudget()`). */
  memoryBudget?: number;
  /** Weights of the layer graphs: 'fp32' (exact, the default) or 'int8'. */
  precision?: Precision;
  /** RAM for the work set's hidden states before they spill to a temporary file (default: what the budget leaves). */
  hiddenStateBytes?: number;
  /** What the layer writer is priced at (default `layerWriterBytes`; tests shrink it to fit beside tiny models). */
  writerBytes?: number;
  /**
   * The checkpoint's folder: when layers stream and the plan allows it, a second thread writes the next
   * streamed layer while the current one runs (layerWriter.ts). Without it every layer is written in turn.
   */
  checkpointFolder?: string;
  /** false: never write layers ahead, even where the plan allows it (the bench's side-by-side baseline). */
  writeAhead?: boolean;
}

/** One layer and the head timed on one batch (the warm-up of an estimate). */
export interface LayerTiming {
  layer: number;
  tokens: number;
  /** 0 for a resident layer. */
  loadSeconds: number;
  /** The same layer loaded a second time (its checkpoint bytes now in the page cache); 0 for a resident layer. */
  reloadSeconds: number;
  layerSeconds: number;
  headSeconds: number;
  /** Loading the head (0 when it is resident): every pass with a loss or logits pays it when the head streams. */
  headLoadSeconds: number;
  /** Building (merging, loading) and releasing one merged session of the layer, when a merge matrix was given. */
  mergeSeconds?: number;
  /**
   * When layers stream and pinned layers are still to load (LayerResidency.open): the bytes the next pass
   * loads as it loads streamed layers (`prepacked` or not), the bytes a later pass reloads prepacked (when
   * the first loads were not and the work's runs make prepacking pay), and the rate of such a reload,
   * timed on one pinned layer.
   */
  pinned?: { loadBytes: number; prepacked: boolean; reloadBytes: number; prepackedPerByte?: number };
}

/** What a pass may be told and asked between layers. */
export interface ForwardHooks {
  shouldStop?: () => boolean;
  onProgress?: (progress: ForwardProgress) => void;
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

/** A batch on its way through a pass: the hidden states entering the current layer, one per lineage. */
interface BatchState {
  batch: Batch;
  ids: Int32Array[];
  /** Prefix-cache key; absent when captures are asked for (cached prefixes skip layers). */
  key?: string;
  /** Per variant, the layer it starts at (a cached prefix's layer, or 0). */
  starts: number[];
  /** Cached hidden states of the unchanged model, by the layer they enter. */
  cached: Map<number, Float32Array>;
  /** Lineage id -> hidden-store key. */
  entering: Map<number, number>;
}

/**
 * How the variants of a pass relate: `lineage[v][l]` names the computation that produced variant v's
 * hidden state entering layer l (equal ids = equal plans on every layer before l, so equal states).
 */
class Lineages {
  readonly planIds: number[][];
  readonly lineage: number[][];
  readonly unchanged: number[];

  constructor(request: ForwardVariantsRequest, numLayers: number) {
    const planIndex = new Map<string, number>();
    const lineageIndex = new Map<string, number>();
    const intern = (index: Map<string, number>, key: string) => index.get(key) ?? index.set(key, index.size).get(key)!;
    const unchangedKey = (l: number) => `${l}|null`;
    this.planIds = request.plans.map((plan) => Array.from({ length: numLayers }, (_, l) => intern(planIndex, plan?.layers[l] ? `${l}|${JSON.stringify(plan.layers[l])}` : unchangedKey(l))));
    const chain = (ids: number[]) => {
      const out = [intern(lineageIndex, '')];
      for (let l = 0; l < numLayers; l++) out.push(intern(lineageIndex, `${out[l]}:${ids[l]}`));
      return out;
    };
    this.lineage = this.planIds.map(chain);
    this.unchanged = chain(Array.from({ length: numLayers }, (_, l) => intern(planIndex, unchangedKey(l))));
  }
}

/**
 * The model as onnxruntime sessions: one per decoder layer plus a head, with the embedding lookup in JS.
 * Per-layer sessions keep each graph under the protobuf limit, expose every MoE layer's inputs for free,
 * and let a plan replace one layer (merging) or resume from cached hidden states (any plan).
 *
 * One execution model whatever the memory: a pass runs layer by layer over a work set (every batch of
 * the request when layers stream, one batch at a time when they are all resident), loading each layer
 * that is not resident once per work set and releasing it after. Every batch meets the same sessions
 * with the same feeds either way, so results are identical whichever policy ran.
 * Synchronous under the hood: run it inside a worker thread. It reads `weights` again for merged and
 * streamed layers, so the caller keeps the WeightSource open until after close().
 */
export class ModelEngine {
  private readonly mergedSessions = new Map<number, { key: string; session: ort.InferenceSession; bytes: number; unhold: () => void }>();
  private readonly prefixCache: PrefixCache;
  private readonly batchTables: BatchTablesCache;

  private constructor(
    readonly spec: ModelSpec,
    readonly memory: MemoryPlan,
    private readonly weights: WeightSource,
    private readonly embedding: EmbeddingRows,
    /** Layers 0..L-1 and, as unit L, the head. */
    private readonly residency: LayerResidency<ort.InferenceSession>,
    private readonly options: EngineOptions,
    private readonly ledger: MemoryLedger,
    private readonly writer?: LayerWriter,
  ) {
    // Cached prefixes and merged layers take their RAM from the hidden states' share of the budget.
    this.prefixCache = new PrefixCache(Math.min(options.prefixCacheBytes ?? 256 * 1024 * 1024, memory.hiddenStateBytes / 4));
    this.batchTables = new BatchTablesCache(rotaryDimOf(spec.attention), spec.attention.ropeTheta, undefined, spec.attention.ropeScaling);
    ledger.watch(() => this.prefixCache.bytes);
  }

  /** Plans the memory first: a budget that cannot hold one layer and the work fails here, before anything loads. */
  static async create(spec: ModelSpec, weights: WeightSource, options: EngineOptions = {}): Promise<ModelEngine> {
    const { tensors: _names, ...shape } = spec;
    const memory = planMemory(shape, { budgetBytes: options.memoryBudget, precision: options.precision, hiddenStateBytes: options.hiddenStateBytes, writerBytes: options.writerBytes });
    const ledger = new MemoryLedger();
    // The head's bytes are held by the residency that loads it (resident or streamed), not as a fixed part.
    ledger.add(memory.fixedBytes - (memory.headResident ? memory.headBytes : 0));
    const embedding = await EmbeddingRows.open(spec, weights, memory.embeddingResident);
    const L = spec.layers.length;
    const loadHead = () => {
      // A stored bf16 lm_head is widened tensor by tensor into the writer's reused buffer (tensorReader):
      // a fresh fp32 copy (Qwen3-30B-A3B: 1.24 GB) cost seconds of first-touch page faults per load.
      const lmHead = spec.tensors.lmHead ? tensorReader(weights, spec.tensors.lmHead) : (embedding.resident ?? tensorReader(weights, spec.tensors.embedTokens));
      return loadGraph(buildHeadGraph(spec, tensorReader(weights, spec.tensors.finalNorm), lmHead, headBiases(spec, weights), memory.precision), options);
    };
    const externalDataThreshold = options.externalDataThreshold ?? DEFAULT_EXTERNAL_DATA_THRESHOLD;
    const writer = memory.writeAhead && options.writeAhead !== false && options.checkpointFolder && !options.externalDataDir
      ? new LayerWriter({ folder: options.checkpointFolder, precision: memory.precision, externalDataThreshold, int8Levels: memory.precision === 'int8' ? await int8WeightLevels() : undefined })
      : undefined;
    const loadLayer = async (index: number, prepack: boolean) => {
      const ahead = await writer?.take(index);
      if (!ahead) return loadGraph(checkpointLayerGraph(spec, weights, index, options.precision), options, prepack);
      try {
        return await createSession(ahead.model, options, prepack);
      } finally {
        removeScratch(ahead.dir);
      }
    };
    const residency = new LayerResidency(memory, (unit, prepack) => (unit === L ? loadHead() : loadLayer(unit, prepack)), (runs) => prepacksFor(memory.precision, runs), ledger);
    try {
      await residency.open();
      return new ModelEngine(spec, memory, weights, embedding, residency, options, ledger, writer);
    } catch (error) {
      await residency.close();
      await writer?.close();
      throw error;
    }
  }

  /**
   * Since open: loads of layers that are not resident (with their bytes, and how many were not prepacked:
   * `prepacksFor`), loads of pinned layers on first use (`pinned`), and the seconds of both.
   */
  get loading(): { loads: number; seconds: number; bytes: number; unpacked: number; pinned: number } {
    const r = this.residency;
    return { loads: r.loads, seconds: r.loadSeconds + r.pinnedLoadSeconds, bytes: r.loadedBytes, unpacked: r.unpackedLoads, pinned: r.pinnedLoads };
  }

  /**
   * The engine's own account of the bytes it holds (MemoryLedger): what the budget is held against. Tests
   * compare `peakBytes` with `budgetBytes`; the process's RSS also has what the OS and onnxruntime add.
   */
  get memoryAccount(): { budgetBytes: number; currentBytes: number; peakBytes: number } {
    return { budgetBytes: this.memory.budgetBytes, currentBytes: this.ledger.current, peakBytes: this.ledger.peak };
  }

  /** Merged sessions kept between passes (all layers resident), which take their RAM from the hidden states' share. */
  get mergedCacheBytes(): number {
    let bytes = 0;
    for (const merged of this.mergedSessions.values()) bytes += merged.bytes;
    return bytes;
  }

  /** @internal The ledger a Pass's hidden-state store reports to. */
  get memoryLedger(): MemoryLedger {
    return this.ledger;
  }

  /** Runs one batch through a session, holding the plan's price of a batch's work meanwhile. */
  async run(session: ort.InferenceSession, feeds: Record<string, ort.Tensor>, fetches: string[]): Promise<ort.InferenceSession.OnnxValueMapType> {
    const working = this.ledger.hold(this.memory.workBytes);
    try {
      return await session.run(feeds, fetches);
    } finally {
      working();
    }
  }

  async forward(request: ForwardRequest, shouldStop: () => boolean = () => false): Promise<ForwardResult> {
    const { plan, ...rest } = request;
    return (await this.forwardVariants({ ...rest, plans: [plan] }, { shouldStop }))[0];
  }

  /** One result per plan, in order; see ForwardVariantsRequest. */
  async forwardVariants(request: ForwardVariantsRequest, hooks: ForwardHooks = {}): Promise<ForwardResult[]> {
    const { spec } = this;
    if (request.plans.length === 0) throw new Error('a forward needs at least one plan (undefined for the unchanged model)');
    request.sequences.forEach((s, i) => {
      if (s.length === 0) throw new Error(`sequence ${i} is empty`);
      s.forEach((id) => (id < 0 || id >= spec.vocabSize) && fail(`sequence ${i} has token ${id} outside the vocabulary (${spec.vocabSize})`));
    });
    const resolved = request.plans.map((plan) => spec.layers.map((layer) => (layer.kind === 'moe' ? resolveLayerPlan(layer.index, layer.moe, plan?.layers[layer.index]) : undefined)));
    const results: SequenceResult[][] = request.plans.map(() => request.sequences.map(() => ({})));
    const batches = makeBatches(request.sequences, request.maxBatchTokens ?? DEFAULT_MAX_BATCH_TOKENS);
    // Streaming loads every layer once per work set, so the work set is the whole request; so does a
    // population of merged variants (only one merged session per layer is kept between work sets, the
    // others are built per work set). Otherwise, with every layer resident, nothing is gained by holding
    // more than one batch's hidden states.
    const mergedPlans = spec.layers.map((_, l) => new Set(resolved.flatMap((layers, v) => (layers[l]?.mergeMatrix ? [JSON.stringify(request.plans[v]!.layers[l])] : []))).size);
    const wholeRequest = this.memory.policy !== 'resident' || mergedPlans.some((count) => count > 1);
    const workSets = wholeRequest ? [batches] : batches.map((batch) => [batch]);
    const pass = new Pass(this, request, resolved, results, hooks, workSets.length);
    try {
      for (const workSet of workSets) await pass.run(workSet);
    } finally {
      pass.close();
    }
    const tokens = request.sequences.reduce((sum, s) => sum + s.length, 0);
    return results.map((sequences) => ({ sequences, tokens }));
  }

  /**
   * The warm-up behind estimates: one layer (loaded now if it is not resident, as a pass would) and the
   * head, timed on one batch of `sequences`, each run twice (the second run is the steady cost). The hidden state fed is the embedding: the cost of a layer
   * does not depend on its input's values, only on its routing, which the first layer's input has too.
   */
  async measureLayer(layer: number, sequences: Int32Array[], mergeMatrix?: number[][], runsPerLoad = 1, passes = 1): Promise<LayerTiming> {
    const { spec } = this;
    const [batch] = makeBatches(sequences, DEFAULT_MAX_BATCH_TOKENS);
    const ids = batch.indices.map((i) => sequences[i]);
    const hidden = await this.embed(ids);
    const { layout, cos, sin, bias } = this.batchTables.get(batch.lengths, batch.padded);
    const feeds: Record<string, ort.Tensor> = {
      [LayerIO.hidden]: new ort.Tensor('float32', hidden, [layout.tokenSlots.length, spec.hiddenSize]),
      [LayerIO.tokenSlots]: new ort.Tensor('int64', layout.tokenSlots, [layout.tokenSlots.length]),
      [LayerIO.gridRows]: new ort.Tensor('int64', layout.gridRows, [layout.gridRows.length]),
      [LayerIO.ropeCos]: new ort.Tensor('float32', cos, [batch.padded, rotaryDimOf(spec.attention)]),
      [LayerIO.ropeSin]: new ort.Tensor('float32', sin, [batch.padded, rotaryDimOf(spec.attention)]),
      [LayerIO.attentionBias]: new ort.Tensor('float32', bias, [ids.length, 1, 1, batch.padded, batch.padded]),
    };
    const layerSpec = spec.layers[layer];
    if (layerSpec.kind === 'moe') Object.assign(feeds, planFeeds(resolveLayerPlan(layer, layerSpec.moe), layerSpec));
    const loadStarted = performance.now();
    // Loaded as a pass that runs it `runsPerLoad` times would load it (prepacked or not: prepacksFor).
    const session = await this.residency.acquire(layer, runsPerLoad);
    let firstRun = 0;
    let secondRun = 0;
    try {
      // A fresh session's first run does one-time work (allocations, kernel choices): a pass pays it once
      // per load, so it counts as loading; the second run is what every further batch costs.
      await this.run(session, feeds, [LayerIO.hiddenOut]);
      firstRun = performance.now();
      await this.run(session, feeds, [LayerIO.hiddenOut]);
      secondRun = performance.now();
    } finally {
      await this.residency.release(layer, session);
    }
    const layerSeconds = (secondRun - firstRun) / 1000;
    const resident = this.memory.residentLayers.includes(layer);
    // The first load may read the checkpoint from disk; later passes often find it in the page cache.
    let reloadSeconds = 0;
    if (!resident) {
      const started = performance.now();
      const again = await this.residency.acquire(layer, runsPerLoad);
      try {
        await this.run(again, feeds, [LayerIO.hiddenOut]);
      } finally {
        await this.residency.release(layer, again);
      }
      reloadSeconds = Math.max(0, (performance.now() - started) / 1000 - layerSeconds);
    }
    const pinned = await this.measurePinned(runsPerLoad, passes);
    let mergeSeconds: number | undefined;
    if (mergeMatrix && layerSpec.kind === 'moe') {
      const started = performance.now();
      const merged = await this.mergedSession(layerSpec, { mergeMatrix }, false);
      await merged.release();
      mergeSeconds = (performance.now() - started) / 1000;
    }
    // The head as a pass uses it: loaded now when it streams (its first run counts as loading, as a layer's).
    const headStarted = performance.now();
    const head = await this.acquireHead();
    let headFirstRun = 0;
    let headSeconds = 0;
    try {
      await this.runHead(head, [sequences.map(() => ({}))], batch, layout.offsets, ids, hidden, { loss: true });
      headFirstRun = performance.now();
      await this.runHead(head, [sequences.map(() => ({}))], batch, layout.offsets, ids, hidden, { loss: true });
      headSeconds = (performance.now() - headFirstRun) / 1000;
    } finally {
      await this.releaseHead(head);
    }
    const tokens = batch.lengths.reduce((a, b) => a + b, 0);
    return {
      layer,
      tokens,
      loadSeconds: resident ? 0 : (firstRun - loadStarted) / 1000 - layerSeconds,
      reloadSeconds,
      layerSeconds,
      headSeconds,
      headLoadSeconds: this.memory.headResident ? 0 : Math.max(0, (headFirstRun - headStarted) / 1000 - headSeconds),
      ...(pinned ? { pinned } : {}),
      ...(mergeSeconds !== undefined ? { mergeSeconds } : {}),
    };
  }

  /**
   * What the pinned layers still cost when layers stream (see LayerResidency.open) for work of `passes`
   * passes of `runsPerLoad` runs: the next pass loads the ones not loaded yet as it loads a streamed
   * layer, and when that is unpacked and the work runs them often enough to be worth prepacking, a later
   * pass reloads each prepacked. Then one pinned layer is loaded prepacked now, timed (and kept), for the
   * estimate's rate of those reloads.
   */
  private async measurePinned(runsPerLoad: number, passes: number): Promise<LayerTiming['pinned']> {
    const { residentLayers, layerBytes, precision } = this.memory;
    const bytes = (layers: number[]) => layers.reduce((sum, l) => sum + layerBytes[l], 0);
    const waiting = () => residentLayers.filter((l) => this.residency.needsLoad(l, runsPerLoad * passes));
    if (this.memory.policy === 'resident' || waiting().length === 0) return undefined;
    const prepacked = prepacksFor(precision, runsPerLoad);
    const reloads = !prepacked && prepacksFor(precision, runsPerLoad * passes);
    let prepackedPerByte: number | undefined;
    if (reloads) {
      const [sample] = waiting();
      const started = performance.now();
      // Loaded prepacked whether it was not loaded yet or loaded unpacked.
      await this.residency.release(sample, await this.residency.acquire(sample));
      prepackedPerByte = (performance.now() - started) / 1000 / layerBytes[sample];
    }
    const unloaded = residentLayers.filter((l) => this.residency.isUnloaded(l));
    return { loadBytes: bytes(unloaded), prepacked, reloadBytes: reloads ? bytes(waiting()) : 0, ...(prepackedPerByte !== undefined ? { prepackedPerByte } : {}) };
  }

  /**
   * Every expert's output of MoE layer `layer` on `tokens` rows of `inputs` (its captured MoE inputs),
   * one array per expert: NAEE's layer reconstruction. The experts load as a session of their own (in
   * the streaming slot, priced like the layer), run in chunks of rows, and are released.
   */
  async expertOutputs(layer: number, inputs: Float32Array, tokens: number): Promise<Float32Array[]> {
    const layerSpec = this.spec.layers[layer];
    if (layerSpec?.kind !== 'moe') throw new Error(`layer ${layer} is not a MoE layer`);
    const H = this.spec.hiddenSize;
    if (inputs.length < tokens * H) throw new Error(`expert outputs of layer ${layer}: ${tokens} tokens need ${tokens * H} input values, got ${inputs.length}`);
    const experts = layerWeights(this.spec, this.weights, layerSpec).experts!;
    const fp32 = { ...this.options, precision: 'fp32' as const };
    const { session, unhold } = await loadHeld(this.ledger, layerWeightBytes(this.spec, layerSpec, 'fp32'), () => loadGraph(buildExpertOutputsGraph(this.spec, layerSpec, experts), fp32));
    const outputs = experts.map(() => new Float32Array(tokens * H));
    const holding = this.ledger.hold(outputs.length * tokens * H * 4);
    try {
      const names = experts.map((_, e) => ExpertOutputsIO.output(e));
      const chunk = 512;
      for (let start = 0; start < tokens; start += chunk) {
        const rows = Math.min(chunk, tokens - start);
        const out = await this.run(session, { [ExpertOutputsIO.inputs]: new ort.Tensor('float32', inputs.subarray(start * H, (start + rows) * H), [rows, H]) }, names);
        names.forEach((name, e) => outputs[e].set(out[name].data as Float32Array, start * H));
      }
      return outputs;
    } finally {
      holding();
      await session.release();
      unhold();
    }
  }

  async close(): Promise<void> {
    for (const merged of this.mergedSessions.values()) {
      await merged.session.release();
      merged.unhold();
    }
    await this.residency.close();
    await this.writer?.close();
    this.mergedSessions.clear();
    this.prefixCache.clear();
  }

  /** Layers loaded from files the layer writer wrote ahead, and the seconds their loads waited for it. */
  get writtenAhead(): { layers: number; waitSeconds: number } {
    return { layers: this.writer?.taken ?? 0, waitSeconds: this.writer?.waitSeconds ?? 0 };
  }

  /**
   * Asks the layer writer (when there is one) for the streamed layer a pass loads after layer `l`: the
   * next one that is not resident, or after the last the first one, since long work is a series of
   * requests (a profile's work sets, a search's generations) that each start at the first layer. One
   * written for a request that does not come is dropped by the next `ahead` or at close. A pinned layer
   * is written ahead while the residency would load it for `runs` runs (layer l's: the pass runs the next
   * on the same states): not loaded yet, or unpacked and due to be reloaded prepacked.
   */
  writeAheadAfter(l: number, runs: number): void {
    if (!this.writer) return;
    const L = this.spec.layers.length;
    for (let next = l + 1; next <= l + L; next++) {
      if (this.residency.needsLoad(next % L, runs)) return this.writer.ahead(next % L);
    }
  }

  /** @internal The pieces a Pass works with. */
  get internals() {
    return { prefixCache: this.prefixCache, batchTables: this.batchTables, residency: this.residency };
  }

  /** The batch's tokens' embeddings, packed: sequence after sequence, no padding. */
  embed(ids: Int32Array[]): Promise<Float32Array> {
    return this.embedding.embed(ids);
  }

  /** The head's session (loaded now when it streams); hand it back with `releaseHead`. */
  acquireHead(): Promise<ort.InferenceSession> {
    return this.residency.acquire(this.spec.layers.length);
  }

  releaseHead(session: ort.InferenceSession): Promise<void> {
    return this.residency.release(this.spec.layers.length, session);
  }

  /**
   * Merged experts need their own weights, so that layer gets its own session, built once per merge
   * matrix (and output scales). While all layers are resident one is kept per layer, as long as the kept
   * ones take at most a quarter of the hidden states' RAM; otherwise it is built for the pass and
   * released after the layer. Its bytes are held in the ledger either way.
   */
  async mergedSession(layer: LayerSpec, merge: MergedLayer, mayCache: boolean): Promise<{ session: ort.InferenceSession; release: () => Promise<void> }> {
    const { mergeMatrix, outputScale, neuronOrder } = merge;
    const key = JSON.stringify([mergeMatrix, outputScale, neuronOrder]);
    const refusal = neuronOrder && neuronOrderRefusal(this.spec, layer.index);
    if (refusal) throw new Error(`plan for layer ${layer.index}: neuronOrder cannot apply: ${refusal}`);
    const current = this.mergedSessions.get(layer.index);
    if (current?.key === key) return { session: current.session, release: async () => {} };
    const bytes = mergedLayerBytes(this.spec, layer, mergeMatrix.length, this.memory.precision);
    const keep = mayCache && this.memory.policy === 'resident' && this.mergedCacheBytes - (current?.bytes ?? 0) + bytes <= this.memory.hiddenStateBytes / 4;
    if (current && keep) {
      await current.session.release();
      current.unhold();
      this.mergedSessions.delete(layer.index);
    }
    const original = layerWeights(this.spec, this.weights, layer);
    const { session, unhold } = await loadHeld(this.ledger, bytes, () => loadGraph(buildLayerGraph(this.spec, layer, original, mergeExperts(original.experts!, mergeMatrix, { outputScale, neuronOrder, mxfp4: mergedMxfp4(this.spec, layer) }), { precision: this.options.precision }), this.options));
    if (keep) {
      this.mergedSessions.set(layer.index, { key, session, bytes, unhold });
      return { session, release: async () => {} };
    }
    return {
      session,
      release: async () => {
        await session.release();
        unhold();
      },
    };
  }

  /** The captures of one layer run, per batch sequence (shared by every variant that ran it). */
  collectMoe(batch: Batch, offsets: number[], layer: number, plan: ResolvedLayerPlan, out: ort.InferenceSession.OnnxValueMapType, withInputs: boolean): MoeLayerCapture[] {
    const E = plan.routedExperts;
    const k = plan.topK;
    const H = this.spec.hiddenSize;
    const logits = out[LayerIO.routerLogits].data as Float32Array;
    const selected = out[LayerIO.selectedExperts].data as Int32Array;
    const gates = out[LayerIO.gateWeights].data as Float32Array;
    const norms = out[LayerIO.expertOutputNorms].data as Float32Array;
    const inputs = withInputs ? (out[LayerIO.moeInput].data as Float32Array) : undefined;
    return batch.indices.map((_, b) => {
      const len = batch.lengths[b];
      const row = offsets[b];
      return {
        layer,
        numExperts: E,
        topK: k,
        routerLogits: logits.slice(row * E, (row + len) * E),
        selectedExperts: selected.slice(row * k, (row + len) * k),
        gateWeights: gates.slice(row * k, (row + len) * k),
        expertOutputNorms: norms.slice(row * k, (row + len) * k),
        inputs: inputs?.slice(row * H, (row + len) * H),
      };
    });
  }

  /**
   * Runs the head on the rows that matter only (last tokens for 'last' logits, every real token
   * otherwise) and writes the outputs into each of `targets` (variants that share the final state).
   */
  async runHead(head: ort.InferenceSession, targets: SequenceResult[][], batch: Batch, offsets: number[], ids: Int32Array[], hidden: Float32Array, outputs: ForwardRequest['outputs']): Promise<void> {
    const H = this.spec.hiddenSize;
    const V = this.spec.vocabSize;
    const everyToken = outputs.logits === 'all' || outputs.loss === true;
    if (!needsHead(outputs)) return;
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
      const headTargets = new Int32Array(chunk.length);
      chunk.forEach(({ b, t }, r) => {
        if (!everyToken) input.set(hidden.subarray((offsets[b] + t) * H, (offsets[b] + t + 1) * H), r * H);
        headTargets[r] = t + 1 < batch.lengths[b] ? ids[b][t + 1] : 0;
      });
      const fetches = [...(outputs.loss ? [HeadIO.nll] : []), ...(outputs.logits ? [HeadIO.logits] : [])];
      const out = await this.run(head, { [HeadIO.hidden]: new ort.Tensor('float32', input, [chunk.length, H]), [HeadIO.targets]: new ort.Tensor('int32', headTargets, [chunk.length]) }, fetches);
      if (outputs.loss) nll.set(out[HeadIO.nll].data as Float32Array, start);
      if (logits) logits.set(out[HeadIO.logits].data as Float32Array, start * V);
    }
    let row = 0;
    batch.indices.forEach((sequenceIndex, b) => {
      const len = batch.lengths[b];
      const count = everyToken ? len : 1;
      const result: SequenceResult = {};
      if (outputs.loss) result.loss = nll.slice(row, row + len - 1);
      if (outputs.logits === 'all') result.logits = logits!.slice(row * V, (row + len) * V);
      if (outputs.logits === 'last') result.logits = logits!.slice((row + count - 1) * V, (row + count) * V);
      for (const target of targets) Object.assign(target[sequenceIndex], result);
      row += count;
    });
  }
}

/**
 * One forward's walk over its work sets, layer by layer: which sessions each layer needs, the hidden
 * states of every batch and lineage between layers (RAM, spilling to a file beyond the budget), the
 * prefix cache, captures, progress and cancellation.
 */
class Pass {
  private readonly store: HiddenStore;
  private readonly lineages: Lineages;
  private readonly firstChanged: number[];
  private readonly usePrefixCache: boolean;
  private readonly started = performance.now();
  private readonly loadingAtStart: number;
  private nextKey = 0;
  private workSetsDone = 0;

  constructor(
    private readonly engine: ModelEngine,
    private readonly request: ForwardVariantsRequest,
    private readonly resolved: (ResolvedLayerPlan | undefined)[][],
    private readonly results: SequenceResult[][],
    private readonly hooks: ForwardHooks,
    private readonly workSets: number,
  ) {
    const L = engine.spec.layers.length;
    const ledger = engine.memoryLedger;
    this.store = new HiddenStore(() => engine.memory.hiddenStateBytes - engine.internals.prefixCache.bytes - engine.mergedCacheBytes, (delta) => ledger.add(delta));
    this.lineages = new Lineages(request, L);
    this.firstChanged = request.plans.map((plan) => firstChangedLayer(plan, L));
    // Cached prefixes are the unchanged model's hidden states, valid only while nothing before them is captured.
    this.usePrefixCache = !request.outputs.moe;
    this.loadingAtStart = engine.loading.seconds;
  }

  close(): void {
    this.store.close();
  }

  async run(workSet: Batch[]): Promise<void> {
    const { spec, internals } = this.engine;
    const L = spec.layers.length;
    const states: BatchState[] = workSet.map((batch) => {
      const ids = batch.indices.map((i) => this.request.sequences[i]);
      const key = this.usePrefixCache ? batchKey(ids) : undefined;
      const cached = new Map<number, Float32Array>();
      const starts = this.firstChanged.map((first) => {
        const hit = key ? internals.prefixCache.lookup(key, first) : undefined;
        if (hit) cached.set(hit.layer, hit.hidden);
        return hit?.layer ?? 0;
      });
      return { batch, ids, key, starts, cached, entering: new Map() };
    });
    for (let l = 0; l <= L; l++) {
      this.stopIfAsked();
      for (const state of states) await this.enter(state, l);
      if (l === L) break;
      const planIds = new Set<number>();
      for (const state of states) for (const v of this.active(state, l)) planIds.add(this.lineages.planIds[v][l]);
      if (planIds.size === 0) continue;
      // One session at a time: the streaming slot the memory plan prices holds one layer, so the
      // variants' merged layers are built, run on every batch and released one after the other.
      const next = states.map(() => new Map<number, number>());
      for (const group of this.sessionGroups(l, planIds, states)) {
        this.stopIfAsked();
        const { session, release } = await group.acquire();
        try {
          for (const [s, state] of states.entries()) {
            this.stopIfAsked();
            await this.runLayer(state, l, group.planIds, session, next[s]);
          }
        } finally {
          await release();
        }
      }
      states.forEach((state, s) => {
        for (const key of state.entering.values()) this.store.delete(key);
        state.entering = next[s];
      });
      this.report(l + 1);
    }
    // The head once for the whole work set (loaded now when it streams), only for outputs that need it.
    const head = needsHead(this.request.outputs) ? await this.engine.acquireHead() : undefined;
    try {
      for (const state of states) {
        this.stopIfAsked();
        await this.finish(state, head);
      }
    } finally {
      if (head) await this.engine.releaseHead(head);
    }
    this.workSetsDone++;
  }

  private active(state: BatchState, layer: number): number[] {
    return state.starts.flatMap((start, v) => (start <= layer ? [v] : []));
  }

  /** Brings in the hidden states that start at `layer`: the embedding at 0, a cached prefix later. */
  private async enter(state: BatchState, layer: number): Promise<void> {
    const unchanged = this.lineages.unchanged[layer];
    if (!state.starts.some((start) => start === layer) || state.entering.has(unchanged)) return;
    const hidden = layer === 0 ? await this.engine.embed(state.ids) : state.cached.get(layer)!;
    state.entering.set(unchanged, this.put(hidden));
  }

  private put(hidden: Float32Array): number {
    const key = this.nextKey++;
    this.store.put(key, hidden);
    return key;
  }

  /**
   * The sessions layer l needs, in the order they are used: the layer's own (resident or loaded now) for
   * every plan that does not merge, then one merged session per merging plan. Only the pass's first
   * merge of a layer may take the layer's cache slot; others are built for this pass.
   */
  private sessionGroups(l: number, planIds: Set<number>, states: BatchState[]): { planIds: Set<number>; acquire: () => Promise<{ session: ort.InferenceSession; release: () => Promise<void> }> }[] {
    const { spec, internals } = this.engine;
    const unmerged = new Set<number>();
    const groups: ReturnType<Pass['sessionGroups']> = [];
    for (const planId of planIds) {
      const variant = this.lineages.planIds.findIndex((ids) => ids[l] === planId);
      const plan = this.resolved[variant][l];
      if (!plan?.mergeMatrix) {
        unmerged.add(planId);
        continue;
      }
      const mayCache = groups.length === 0;
      groups.push({ planIds: new Set([planId]), acquire: () => this.engine.mergedSession(spec.layers[l], { mergeMatrix: plan.mergeMatrix!, outputScale: plan.outputScale, neuronOrder: plan.neuronOrder }, mayCache) });
    }
    if (unmerged.size === 0) return groups;
    const own = {
      planIds: unmerged,
      acquire: async () => {
        // The next streamed layer is written on the writer's thread while this one loads and runs.
        const runs = this.runsAt(l, unmerged, states);
        this.engine.writeAheadAfter(l, runs);
        const session = await internals.residency.acquire(l, runs);
        return { session, release: () => internals.residency.release(l, session) };
      },
    };
    return [own, ...groups];
  }

  /** How many runs of layer l's session the variants with a plan in `planIds` make over these batches (one per entering state and plan, as runLayer groups them). */
  private runsAt(l: number, planIds: Set<number>, states: BatchState[]): number {
    const { lineage, planIds: ids } = this.lineages;
    let runs = 0;
    for (const state of states) runs += new Set(this.active(state, l).flatMap((v) => (planIds.has(ids[v][l]) ? [`${lineage[v][l]} ${ids[v][l]}`] : []))).size;
    return runs;
  }

  /** Runs the variants whose layer-l plan is in `planIds` on one batch, adding their outputs to `next` (lineage -> store key). */
  private async runLayer(state: BatchState, l: number, planIdsHere: Set<number>, session: ort.InferenceSession, next: Map<number, number>): Promise<void> {
    const { spec, internals } = this.engine;
    const { lineage, planIds } = this.lineages;
    const { batch, ids } = state;
    const { layout, cos, sin, bias } = internals.batchTables.get(batch.lengths, batch.padded);
    const shared = {
      [LayerIO.tokenSlots]: new ort.Tensor('int64', layout.tokenSlots, [layout.tokenSlots.length]),
      [LayerIO.gridRows]: new ort.Tensor('int64', layout.gridRows, [layout.gridRows.length]),
      [LayerIO.ropeCos]: new ort.Tensor('float32', cos, [batch.padded, rotaryDimOf(spec.attention)]),
      [LayerIO.ropeSin]: new ort.Tensor('float32', sin, [batch.padded, rotaryDimOf(spec.attention)]),
      [LayerIO.attentionBias]: new ort.Tensor('float32', bias, [ids.length, 1, 1, batch.padded, batch.padded]),
    };
    // Variants by the state they enter with, then by this layer's plan.
    const groups = new Map<number, Map<number, number[]>>();
    for (const v of this.active(state, l)) {
      if (!planIdsHere.has(planIds[v][l])) continue;
      const byPlan = groups.get(lineage[v][l]) ?? groups.set(lineage[v][l], new Map()).get(lineage[v][l])!;
      (byPlan.get(planIds[v][l]) ?? byPlan.set(planIds[v][l], []).get(planIds[v][l])!).push(v);
    }
    for (const [entering, byPlan] of groups) {
      const hidden = this.store.peek(state.entering.get(entering)!);
      const members = [...byPlan.values()].flat();
      if (state.key && entering === this.lineages.unchanged[l] && members.some((v) => this.firstChanged[v] === l)) internals.prefixCache.store(state.key, l, hidden);
      for (const variants of byPlan.values()) {
        const plan = this.resolved[variants[0]][l];
        const feeds: Record<string, ort.Tensor> = { ...shared, [LayerIO.hidden]: new ort.Tensor('float32', hidden, [layout.tokenSlots.length, spec.hiddenSize]) };
        const fetches: string[] = [LayerIO.hiddenOut];
        const capture = plan && this.request.outputs.moe;
        if (plan) {
          Object.assign(feeds, planFeeds(plan, spec.layers[l]));
          if (capture) fetches.push(LayerIO.routerLogits, LayerIO.selectedExperts, LayerIO.gateWeights, LayerIO.expertOutputNorms);
          if (capture && this.request.outputs.moeInputs) fetches.push(LayerIO.moeInput);
        }
        const out = await this.engine.run(session, feeds, fetches);
        next.set(lineage[variants[0]][l + 1], this.put(out[LayerIO.hiddenOut].data as Float32Array));
        if (!capture) continue;
        const captures = this.engine.collectMoe(batch, layout.offsets, l, plan, out, this.request.outputs.moeInputs === true);
        for (const v of variants) batch.indices.forEach((sequenceIndex, b) => (this.results[v][sequenceIndex].moe ??= []).push(captures[b]));
      }
    }
  }

  /** The head, once per distinct final state, into the results of every variant that reached it. */
  private async finish(state: BatchState, head: ort.InferenceSession | undefined): Promise<void> {
    const { spec, internals } = this.engine;
    const L = spec.layers.length;
    const { layout } = internals.batchTables.get(state.batch.lengths, state.batch.padded);
    for (const [final, key] of state.entering) {
      const hidden = this.store.take(key);
      const variants = this.request.plans.flatMap((_, v) => (this.lineages.lineage[v][L] === final ? [v] : []));
      if (state.key && final === this.lineages.unchanged[L] && variants.some((v) => this.firstChanged[v] === L)) internals.prefixCache.store(state.key, L, hidden);
      if (head) await this.engine.runHead(head, variants.map((v) => this.results[v]), state.batch, layout.offsets, state.ids, hidden, this.request.outputs);
    }
    state.entering.clear();
  }

  private stopIfAsked(): void {
    if (this.hooks.shouldStop?.()) throw new ForwardCancelledError();
  }

  private report(layersDone: number): void {
    if (!this.hooks.onProgress) return;
    const layers = this.engine.spec.layers.length;
    const seconds = (performance.now() - this.started) / 1000;
    const done = (this.workSetsDone + layersDone / layers) / this.workSets;
    this.hooks.onProgress({
      layersDone,
      layers,
      workSetsDone: this.workSetsDone,
      workSets: this.workSets,
      seconds,
      loadingSeconds: this.engine.loading.seconds - this.loadingAtStart,
      secondsLeft: done > 0 ? (seconds / done) * (1 - done) : 0,
    });
  }
}

function needsHead(outputs: ForwardRequest['outputs']): boolean {
  return outputs.loss === true || outputs.logits !== undefined;
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
async function loadGraph(graph: GraphBuilder, options: EngineOptions, prepack = true): Promise<ort.InferenceSession> {
  const externalDataThreshold = options.externalDataThreshold ?? DEFAULT_EXTERNAL_DATA_THRESHOLD;
  const scratch = !options.externalDataDir && graph.weightBytes() > externalDataThreshold ? fs.mkdtempSync(path.join(os.tmpdir(), 'moe-runtime-')) : undefined;
  const model = await graph.serialize({ externalDataDir: options.externalDataDir ?? scratch, externalDataThreshold });
  try {
    return await createSession(model, options, prepack);
  } finally {
    if (scratch) removeScratch(scratch);
    else if (model.kind === 'file') for (const file of [model.modelPath, model.weightsPath]) removeScratch(file);
  }
}



/**
 * Whether a layer loaded for `runs` runs of its session (batches x the variant states a pass runs it on)
 * is prepacked. onnxruntime prepacks every constant weight of its MatMuls when it creates a session;
 * without that, the kernel packs the weights on each run instead. Measured on the OLMoE-1B-7B 4-layer cut
 * in int8 (Zen 5, 2 threads, alternating processes): opening the 4 layers and the head took 25.6-37.0 s
 * prepacked against 11.2-13.9 s not (prepacking is 3-6 s of an int8 layer's load, most of it first-touch
 * faults of fresh memory on these VMs), and a 2048-token forward 1.88-2.02 s against 2.45-2.81 s (about
 * 0.1-0.2 s a layer and run more, unpacked). So a streamed int8 layer that runs fewer than 24 times
 * before it is released (a 48k-token work set of one variant) is not prepacked.
 * Only int8: its products are sums of integers, so the unpacked kernel gives the same bits (streaming.test.ts
 * compares streamed with resident results bit for bit). fp32's unpacked Gemm adds in another order (logits
 * about 3e-7 apart), and results must not depend on the memory budget, so fp32 always prepacks.
 */
export function prepacksFor(precision: Precision, runs: number): boolean {
  return precision !== 'int8' || runs >= 24;
}

function createSession(model: SerializedModel, options: EngineOptions, prepack = true): Promise<ort.InferenceSession> {
  const sessionOptions: ort.InferenceSession.SessionOptions = {
    intraOpNumThreads: options.threads ?? 1,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    // No per-session arena: it keeps a session's largest intermediates after every run, so each loaded layer
    // held a batch's work beside its weights (OLMoE-1B-7B int8, 6 resident layers: 6.3 GB peak against 4.1 GB
    // without; a 6 GB streamed profile was killed at 7 GB). planMemory prices one batch's work, which is
    // what runs at a time once buffers are freed after each run. Speed at 8192 tokens: within noise
    // (17.2-21.3 s either way, 3 alternating runs each); sessionMemory.test.ts holds it.
    enableCpuMemArena: false,
    // No busy-waiting between ops: it burns the editor's CPU and, on a loaded machine, made two threads
    // slower than one (measured: 2-thread MatMul 78 ms spinning vs 52 ms not, 1 thread 50 ms).
    extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' }, ...(prepack ? {} : { disable_prepacking: '1' }) } },
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
