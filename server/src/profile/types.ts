/**
 * The shapes of an expert-usage profile: the profile file, its per-layer statistics, its token
 * records, and the comparison of two profiles. Types only, so the webview can `import type` them
 * without pulling in Node modules. `docs/profile-schema.md` explains every field.
 */
import type { DatasetFormat } from '../../../common/protocol';

/** How a dataset row becomes the text to tokenise. */
export type FieldSpec =
  /** The row is the text (text files, JSON arrays of strings). */
  | { kind: 'string' }
  /** One string field, e.g. `text` or `content`. */
  | { kind: 'field'; field: string }
  /** Two string fields joined, e.g. `prompt` + `completion` (separator "") or `question` + `answer` ("\n"). */
  | { kind: 'pair'; fields: [string, string]; separator: string }
  /** A chat: an array of `{role, content}` (or ShareGPT `{from, value}`) joined with `<|role|>` markers. */
  | { kind: 'chat'; field: string };

/** Statistics of one MoE layer over the whole dataset. Arrays of length E are indexed by expert. */
export interface LayerStatistics {
  /** The decoder layer index in the checkpoint (`model.layers.{layer}`). */
  layer: number;
  numExperts: number;
  topK: number;
  /** Tokens seen by this layer. */
  tokens: number;
  /** (token, slot) pairs that went to an expert; tokens × topK unless slots were dropped. */
  routedSlots: number;
  /** Mean over tokens of the entropy (nats) of the softmax over all E router logits; at most ln E. */
  meanEntropy: number;
  /** Tokens that had the expert among their top-k. */
  tokenCounts: number[];
  /** tokenCounts / routedSlots: sums to 1 over the layer's experts. */
  usageShare: number[];
  /** Sum of the expert's gate weight over the tokens routed to it (gates as the model applies them). */
  softCounts: number[];
  /** Sum of the expert's softmax probability over ALL tokens, routed or not; sums to `tokens`. */
  fullSoftCounts: number[];
  /** softCounts / tokenCounts: mean gate weight when routed (0 when never routed). */
  meanGate: number[];
  /** REAP score: mean over routed tokens of gate × ||expert output|| (0 when never routed). */
  reap: number[];
  /** Share of the layer's tokens whose highest-gate expert is this one. */
  top1Share: number[];
  /** Mean routing entropy (nats) of the tokens routed to the expert: high means it is picked when the router is unsure. */
  routedEntropy: number[];
  /** E×E rows: tokens with both experts in their top-k (i ≠ j); the diagonal is tokenCounts. */
  coActivation: number[][];
  /** E×E rows: cosine similarity of the experts' router-logit columns over all tokens. */
  logitCosine: number[][];
  /**
   * E×E rows: Pearson correlation of the same columns (each centred on its mean over the tokens). Absent in
   * profiles written before it existed.
   */
  logitCorrelation?: number[][];
  /** For each threshold T of the profile's `gatingThresholds`: share of tokens with p1 − p2 > T. */
  singleExpertShare: number[];
}

/** Routing of one token, for hovers and decorations in the editor. */
export interface TokenRecord {
  /** 0-based row index in the dataset (the order rows are read in). */
  row: number;
  /** Character offsets [start, end) in the row's text (the text built from the row by its FieldSpec). */
  start: number;
  end: number;
  /** Token id in the model's vocabulary. */
  token: number;
  /** Per entry of the profile's `layers` (same order): the chosen experts, highest gate first. */
  experts: number[][];
  /** The gate weights of `experts`, same shape. */
  gates: number[][];
}

export interface ProfileModel {
  /** The checkpoint folder, relative to the workspace folder when inside it. */
  folder: string;
  /** config.json `architectures[0]`, e.g. "MixtralForCausalLM". */
  architecture: string;
  numLayers: number;
  numExperts: number;
  topK: number;
  /** Identifies the weights (e.g. a hash of config.json and the safetensors headers). */
  fingerprint: string;
}

export interface ProfileDataset {
  /** The dataset file, relative to the workspace folder when inside it. */
  file: string;
  format: DatasetFormat;
  field: FieldSpec;
  /** Rows profiled (after `settings.maxRows`). */
  rows: number;
  /** Tokens profiled. */
  tokens: number;
  /** SHA-256 (hex) of the file's bytes. */
  contentSha256: string;
  /** Chat rows only: rendered with the model's chat_template ("model") or, when it has none, as `<|role|>\ncontent` ("plain"). */
  chatTemplate?: 'model' | 'plain';
  malformedRows: number;
  /** 1-based line numbers of the first malformed rows. */
  firstMalformedLines: number[];
}

export interface ProfileSettings {
  /** Rows longer than this many tokens are truncated to this length (the run notes how many were). */
  sequenceLength: number;
  /** Rows profiled at most; null for all. */
  maxRows: number | null;
  /** How many tokens (from the start of the dataset) keep a TokenRecord. */
  tokenRecords: number;
}

export interface ProfileFile {
  schema: 'moe-studio.profile';
  version: 1;
  /** ISO 8601. */
  createdAt: string;
  /** SHA-256 of the model fingerprint, dataset hash, field and settings: equal keys mean the profile is current. */
  cacheKey: string;
  model: ProfileModel;
  dataset: ProfileDataset;
  settings: ProfileSettings;
  /** The thresholds T of every layer's `singleExpertShare`, ascending. */
  gatingThresholds: number[];
  /** One entry per MoE layer, by ascending `layer`. */
  layers: LayerStatistics[];
  tokens: TokenRecord[];
}

/** One layer of a comparison "this profile minus another". */
export interface LayerComparison {
  layer: number;
  numExperts: number;
  /** usageShare(this) − usageShare(other), per expert. */
  shareDifference: number[];
  /** Jensen–Shannon divergence (base 2, in [0, 1]) between the two usage distributions. */
  jensenShannon: number;
}

export interface ProfileComparison {
  /** Labels for the two sides, e.g. the dataset file names. */
  label: string;
  otherLabel: string;
  layers: LayerComparison[];
  /** Layers that could not be compared (missing on one side, or different expert counts). */
  skipped: { layer: number; reason: string }[];
}
