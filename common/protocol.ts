/**
 * The one protocol of MoE Studio, shared by the extension host (client/), the language server
 * (server/) and the webviews (webview/).
 *
 * - Custom LSP requests and notifications are `RequestType`/`NotificationType` objects named
 *   `moeStudio/<verb>`, so neither side ever spells a method name or guesses a payload shape.
 * - Webview messages use one envelope, `{type, payload, requestId?}`, with a typed map from `type` to
 *   `payload` in each direction.
 *
 * Webview code must only `import type` from here: the runtime values below pull in vscode-jsonrpc.
 */
import { NotificationType, RequestType } from 'vscode-languageserver-protocol';

// ---------------------------------------------------------------------------------------------
// Server health (drives the status bar item)

export type HealthState = 'starting' | 'ready' | 'busy' | 'error';

export interface HealthParams {
  state: HealthState;
  /** One line for the status bar tooltip, e.g. "Profiling code.valid.jsonl". */
  message: string;
  /** Longer text for errors (shown in the tooltip and logged). */
  detail?: string;
}

export namespace HealthNotification {
  export const method = 'moeStudio/health';
  export const type = new NotificationType<HealthParams>(method);
}

// ---------------------------------------------------------------------------------------------
// Workspace trust: the client tells the server, because only the client can see it.

export interface TrustParams {
  trusted: boolean;
}

export namespace TrustNotification {
  export const method = 'moeStudio/trust';
  export const type = new NotificationType<TrustParams>(method);
}

/** Options the client passes in `initialize`. */
export interface InitializationOptions {
  trusted: boolean;
  /** Where the server may cache things (profiles live in the workspace, not here). */
  storageDir?: string;
}

// ---------------------------------------------------------------------------------------------
// Datasets

export type DatasetFormat = 'jsonl' | 'json' | 'csv' | 'parquet' | 'txt';

export const DATASET_EXTENSIONS: Record<string, DatasetFormat> = {
  '.jsonl': 'jsonl',
  '.json': 'json',
  '.csv': 'csv',
  '.parquet': 'parquet',
  '.txt': 'txt',
};

export interface SummarizeDatasetParams {
  /** A `file:` URI. */
  uri: string;
}

export interface DatasetSummary {
  uri: string;
  fileName: string;
  format: DatasetFormat;
  bytes: number;
  rows: number;
  /** Rows that could not be parsed (JSONL/CSV), with the first few line numbers (1-based). */
  malformedRows: number;
  firstMalformedLines: number[];
  /** Histogram of row sizes in bytes: `counts[i]` rows have a size in [edges[i], edges[i+1]). */
  rowBytesHistogram: { edges: number[]; counts: number[] };
}

export namespace SummarizeDatasetRequest {
  export const method = 'moeStudio/summarizeDataset';
  export const type = new RequestType<SummarizeDatasetParams, DatasetSummary, void>(method);
}

// ---------------------------------------------------------------------------------------------
// Error codes carried by ResponseError, so the client can react without parsing messages.

export const enum ErrorCodes {
  /** Bad user input: a file that cannot be read or parsed, an invalid setting. */
  InvalidInput = -32001,
  /** The workspace is untrusted and the request would run a model. */
  Untrusted = -32002,
  /** The request was cancelled by the user. */
  Cancelled = -32800,
  /** A bug: anything we did not anticipate. */
  Internal = -32603,
}

// ---------------------------------------------------------------------------------------------
// Webview messages: `{type, payload, requestId?}` in both directions.

export interface ToWebviewMessages {
  /** The dataset summary to chart. */
  datasetSummary: DatasetSummary;
  /** A finished expert profile to show on the dashboard. */
  profile: { profile: ProfileFile; profilePath: string; notes: string[] };
  /** Compare mode: this profile minus another. */
  comparison: ProfileComparison;
  /** Something failed on the extension side; the panel shows it instead of a chart. */
  error: { message: string };
}

export interface FromWebviewMessages {
  /** The page's script has loaded and listens; the extension may now post data. */
  ready: Record<string, never>;
  /** The user asked to save a chart: a PNG data URL and a suggested file name. */
  saveChart: { dataUrl: string; fileName: string };
  /** The user asked to compare this profile with another saved one. */
  compare: Record<string, never>;
}

export type Envelope<M, K extends keyof M = keyof M> = K extends keyof M
  ? { type: K; payload: M[K]; requestId?: number }
  : never;

export type ToWebviewMessage = Envelope<ToWebviewMessages>;
export type FromWebviewMessage = Envelope<FromWebviewMessages>;

// ---------------------------------------------------------------------------------------------
// Models

export interface DescribeModelParams {
  /** The model folder (or a file inside it). */
  folder: string;
}

export interface ModelSummary {
  folder: string;
  architecture: string;
  layers: number;
  moeLayers: number[];
  /** Experts per MoE layer and experts per token (of the first MoE layer; uniform in stock models). */
  numExperts: number;
  topK: number;
  hiddenSize: number;
  vocabSize: number;
  /** Storage dtypes and how many tensors use each. */
  dtypes: Record<string, number>;
  parameters: number;
  /** Parameters in routed experts, the part pruning shrinks. */
  expertParameters: number;
  /** Parameters a token uses: everything but the experts it is not routed to. */
  activeParametersPerToken: number;
  bytes: number;
}

export namespace DescribeModelRequest {
  export const method = 'moeStudio/describeModel';
  export const type = new RequestType<DescribeModelParams, ModelSummary, void>(method);
}

// ---------------------------------------------------------------------------------------------
// Plan files (`*.moeplan.json`): the server publishes diagnostics and answers hover, completion,
// code action and code lens requests for them with standard LSP; no custom request is involved.
// Its code lenses invoke these client commands with one argument, the plan's URI (a string).

export const PlanCommands = {
  evaluate: 'moeStudio.evaluatePlan',
  preview: 'moeStudio.previewPlan',
  export: 'moeStudio.exportPlan',
} as const;

/** The arguments of every `PlanCommands` command, as the code lens passes them. */
export type PlanCommandArguments = [planUri: string];

// ---------------------------------------------------------------------------------------------
// Profiling experts on a dataset

import type { FieldSpec, ProfileComparison, ProfileFile } from '../server/src/profile/types';

export interface FindModelsParams {
  /** Workspace folders to search (file system paths). */
  folders: string[];
}

export interface ModelCandidate {
  folder: string;
  architecture?: string;
}

/** Model folders (config.json + *.safetensors) found in the workspace, nearest first. */
export namespace FindModelsRequest {
  export const method = 'moeStudio/findModels';
  export const type = new RequestType<FindModelsParams, ModelCandidate[], void>(method);
}

export interface DetectTextFieldParams {
  uri: string;
}

export interface TextFieldCandidate {
  spec: FieldSpec;
  label: string;
  confidence: number;
}

export interface DetectTextFieldResult {
  candidates: TextFieldCandidate[];
  /** True when the best candidate is clear enough to use without asking. */
  confident: boolean;
}

export namespace DetectTextFieldRequest {
  export const method = 'moeStudio/detectTextField';
  export const type = new RequestType<DetectTextFieldParams, DetectTextFieldResult, void>(method);
}

export interface ProfileDatasetParams {
  uri: string;
  /** The model folder. */
  model: string;
  field: FieldSpec;
  /** Workspace folder the profile is saved under (`.moe-studio/profiles/`). */
  workspaceFolder: string;
  /** From the `moeStudio.profile.*` and `moeStudio.threads` settings. */
  settings: ProfileRunSettings;
  /** Profile again even when a current profile exists. */
  force?: boolean;
  /** Set by the client: the server reports progress (tokens, tokens/s, time left) on it. */
  workDoneToken?: string | number;
}

export interface ProfileRunSettings {
  /** Rows longer than this many tokens are truncated (with a note). */
  sequenceLength: number;
  /** Profile at most this many rows; null for all. */
  maxRows: number | null;
  /** Keep per-token routing for the first this many tokens (hovers, decorations). */
  tokenRecords: number;
  /** What to do with a row that cannot be parsed or lacks the text field. */
  onMalformed: 'skip' | 'stop';
  /** onnxruntime threads; 0 = all cores but one. */
  threads: number;
}

export interface ProfileDatasetResult {
  profilePath: string;
  /** True when an up-to-date saved profile was reused instead of running the model. */
  reused: boolean;
  profile: ProfileFile;
  /** Human notes: truncated rows, skipped malformed rows, … */
  notes: string[];
}

export namespace ProfileDatasetRequest {
  export const method = 'moeStudio/profileDataset';
  export const type = new RequestType<ProfileDatasetParams, ProfileDatasetResult, void>(method);
}

export interface TokenRoutesParams {
  uri: string;
}

export interface TokenRoute {
  /** Range in the dataset document (0-based line and UTF-16 character). */
  range: { start: { line: number; character: number }; end: { line: number; character: number } };
  /** Per profiled MoE layer: experts chosen, highest gate first, and their gates. */
  experts: number[][];
  gates: number[][];
}

export interface TokenRoutesResult {
  /** The MoE layer indices, in the order of `experts`/`gates`. */
  layers: number[];
  numExperts: number;
  routes: TokenRoute[];
}

/** Token-level routing of a profiled dataset in document coordinates, for decorations. */
export namespace TokenRoutesRequest {
  export const method = 'moeStudio/tokenRoutes';
  export const type = new RequestType<TokenRoutesParams, TokenRoutesResult, void>(method);
}

export interface CompareProfilesParams {
  /** Profile files (paths). The result is `a` minus `b`. */
  a: string;
  b: string;
}

export namespace CompareProfilesRequest {
  export const method = 'moeStudio/compareProfiles';
  export const type = new RequestType<CompareProfilesParams, ProfileComparison, void>(method);
}
