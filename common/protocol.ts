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
import { anyObject, array, boolean, integer, literal, nullable, number, object, oneOf, optional, string, tagged, type Schema } from './paramSchema';
import type { MoePlan, PlanEvaluation } from '../server/src/plan/planFile';
import type { ExportPreview, PreviewTensor } from '../server/src/export/previewExport';
import type { FieldSpec, ProfileComparison, ProfileFile } from '../server/src/profile/types';

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
  /** The `moeStudio.threads` setting at start; later changes arrive by didChangeConfiguration. */
  threads?: number;
  /** The `moeStudio.memoryBudget` setting ('6GB'; '' = the default from the machine's RAM), likewise. */
  memoryBudget?: string;
  /** The `moeStudio.precision` setting, likewise. */
  precision?: 'fp32' | 'int8';
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
  /** An export target exists; the client asks before retrying with `overwrite`. */
  ExportTargetExists = -32003,
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
  /** The plan preview: kept, merged and dropped experts, savings, quality. */
  planPreview: PreviewPlanResult;
  /** Quality against experts kept, per method. */
  sweep: SweepResult;
  /** The sweep was not run after all (no dataset picked); its button is ready again. */
  sweepCancelled: Record<string, never>;
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
  /** Plan preview buttons. */
  runSweep: Record<string, never>;
  openConfigDiff: Record<string, never>;
  evaluatePlan: Record<string, never>;
  exportPlan: Record<string, never>;
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
  /** How the router picks experts, in one line (e.g. "softmax over 8 experts, top-2, renormalised"). */
  routing: string;
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

// ---------------------------------------------------------------------------------------------
// Plans: generate, evaluate, preview, sweep, compare


/** The methods that choose which experts stay (and can be swept over experts kept). */
export type PlanMethodName = 'random' | 'frequency' | 'softCount' | 'reap' | 'naee' | 'uncurl' | 'eep';
/** What "Generate pruning plan" can make: a pruning method, or adaptive gating alone (every expert stays). */
export type GenerateMethodName = PlanMethodName | 'adaptiveGating';

export interface GeneratePlanParams {
  /** The model folder. */
  model: string;
  method: GenerateMethodName;
  /** Experts to keep per MoE layer (every method but adaptiveGating). */
  targetExperts?: number;
  /** Calibration datasets (file paths) with their text field. */
  calibration: { file: string; field: FieldSpec }[];
  /** A saved profile of the calibration data (statistics-based methods); profiled on demand when absent. */
  profilePath?: string;
  seed: number;
  /**
   * Method parameters (EEP budget, population, …); defaults when absent. Any method but adaptive gating
   * also takes `keepShare` (0 < x ≤ 1: a global expert budget shared out across layers by measured
   * loss, instead of `targetExperts`) and `repairs` (`["routerRefit", "outputCompensation"]`, either or
   * both: closed-form repairs after the method). docs/plan-format.md has the details.
   */
  parameters?: Record<string, unknown>;
  /** Also choose an adaptive-gating threshold per layer reaching this share of single-expert tokens. */
  singleExpertShare?: number;
  /** Where to write the `*.moeplan.json` (a path); the server refuses to overwrite an existing file. */
  output: string;
  workDoneToken?: string | number;
}

export interface GeneratePlanResult {
  planPath: string;
  plan: MoePlan;
  /** Sentences for the user about the plan (e.g. merges of experts the calibration data relies on). */
  warnings?: string[];
}

export namespace GeneratePlanRequest {
  export const method = 'moeStudio/generatePlan';
  export const type = new RequestType<GeneratePlanParams, GeneratePlanResult, void>(method);
}

export type EvaluationMetric = 'loss' | 'perplexity' | 'kl' | 'top1Agreement' | 'accuracy';

export interface EvaluatePlanParams {
  /** The plan file (a path). */
  plan: string;
  /** Held-out datasets (paths) with their text field; multiple-choice data (`{prompt, choices, label}`) is scored by accuracy. */
  datasets: { file: string; field?: FieldSpec }[];
  /** At most this many rows per dataset. */
  maxRows?: number;
  workDoneToken?: string | number;
}

export interface EvaluatePlanResult {
  /** One entry per dataset and metric, with the full model's baseline (cached). */
  evaluations: PlanEvaluation[];
  /** The plan file's text with `evaluations` updated, for the client to apply as an undoable edit. */
  updatedPlanText: string;
}

export namespace EvaluatePlanRequest {
  export const method = 'moeStudio/evaluatePlan';
  export const type = new RequestType<EvaluatePlanParams, EvaluatePlanResult, void>(method);
}

export interface PlanLayerPreview {
  layer: number;
  numExperts: number;
  kept: number[];
  /** Original experts merged into each kept expert (excluding itself), by kept id. */
  mergedInto: Record<number, number[]>;
  dropped: number[];
  topK?: number;
  adaptiveThreshold?: number;
}

export interface PreviewPlanResult {
  plan: MoePlan;
  layers: PlanLayerPreview[];
  /** The model's config.json before and after export, for VS Code's diff editor. */
  configBefore: string;
  configAfter: string;
  /** Why a Hugging Face export cannot express the plan exactly (empty when it can). */
  notExactReasons: string[];
  /** The model folder and calibration files the plan names, resolved as the server reads them (absolute paths). */
  modelFolder: string;
  calibrationFiles: string[];
}

export namespace PreviewPlanRequest {
  export const method = 'moeStudio/previewPlan';
  /** `text`: the editor's current text of the plan, when it has unsaved edits. */
  export const type = new RequestType<{ plan: string; text?: string }, PreviewPlanResult, void>(method);
}

export interface SweepParams {
  model: string;
  methods: PlanMethodName[];
  /** Kept-expert counts to try, e.g. [8, 7, …, 1]. */
  counts: number[];
  calibration: { file: string; field: FieldSpec }[];
  /** Held-out dataset the quality is measured on. */
  evaluation: { file: string; field?: FieldSpec };
  metric: EvaluationMetric;
  seed: number;
  maxRows?: number;
  workDoneToken?: string | number;
}

export interface SweepResult {
  metric: EvaluationMetric;
  counts: number[];
  /** The full model's value of the metric, drawn as a reference line. */
  baseline: number;
  /** Per method: the metric at each count (same order as `counts`). */
  series: { method: PlanMethodName; values: number[] }[];
}

/** Quality against experts kept, for several methods side by side: where quality falls off. */
export namespace SweepRequest {
  export const method = 'moeStudio/sweep';
  export const type = new RequestType<SweepParams, SweepResult, void>(method);
}

// ---------------------------------------------------------------------------------------------
// Export

export type ExportFormat = 'huggingface' | 'onnx';

/** What an export would change: tensors and bytes, config.json before and after, and why a HF export would refuse. */
export type ExportPreviewResult = Omit<ExportPreview, 'tensors' | 'counts' | 'nonUniformExperts'> & {
  tensors: Pick<PreviewTensor, 'name' | 'action' | 'bytes'>[];
};

export namespace ExportPreviewRequest {
  export const method = 'moeStudio/exportPreview';
  export const type = new RequestType<{ plan: string }, ExportPreviewResult, void>(method);
}

export interface ExportPlanParams {
  plan: string;
  format: ExportFormat;
  /** The new model folder (HF) or .onnx file; it must not exist unless `overwrite`. */
  target: string;
  overwrite?: boolean;
  workDoneToken?: string | number;
}

export interface ExportPlanResult {
  target: string;
  files: { path: string; bytes: number; sha256: string }[];
  /** The model card (README.md) of a Hugging Face export. */
  modelCard?: string;
}

export namespace ExportPlanRequest {
  export const method = 'moeStudio/exportPlan';
  export const type = new RequestType<ExportPlanParams, ExportPlanResult, void>(method);
}

// ---------------------------------------------------------------------------------------------
// Parameter schemas: every `moeStudio/*` request's params, checked where they enter the server
// (lsp/safeHandler.ts) so a malformed request is answered "invalid params" naming the field.
// Keep each in step with the request's params interface above.

const fieldSpecSchema = tagged('kind', {
  string: object({}),
  field: object({ field: string }),
  pair: object({ fields: array(string, 2), separator: string }),
  chat: object({ field: string }),
});
const workDoneToken = optional(oneOf('a string or a number', string, number));
const fileAndField = object({ file: string, field: fieldSpecSchema });
const planMethod = literal('random', 'frequency', 'softCount', 'reap', 'naee', 'uncurl', 'eep');

export const REQUEST_PARAM_SCHEMAS: Record<string, Schema> = {
  [SummarizeDatasetRequest.method]: object({ uri: string }),
  [DescribeModelRequest.method]: object({ folder: string }),
  [FindModelsRequest.method]: object({ folders: array(string) }),
  [DetectTextFieldRequest.method]: object({ uri: string }),
  [ProfileDatasetRequest.method]: object({
    uri: string,
    model: string,
    field: fieldSpecSchema,
    workspaceFolder: string,
    settings: object({
      sequenceLength: optional(integer),
      maxRows: optional(nullable(integer)),
      tokenRecords: optional(integer),
      onMalformed: optional(literal('skip', 'stop')),
      threads: optional(integer),
    }),
    force: optional(boolean),
    workDoneToken,
  }),
  [TokenRoutesRequest.method]: object({ uri: string }),
  [CompareProfilesRequest.method]: object({ a: string, b: string }),
  [GeneratePlanRequest.method]: object({
    model: string,
    method: oneOf('a plan method', planMethod, literal('adaptiveGating')),
    targetExperts: optional(integer),
    calibration: array(fileAndField),
    profilePath: optional(string),
    seed: integer,
    parameters: optional(anyObject),
    singleExpertShare: optional(number),
    output: string,
    workDoneToken,
  }),
  [EvaluatePlanRequest.method]: object({
    plan: string,
    datasets: array(object({ file: string, field: optional(fieldSpecSchema) })),
    maxRows: optional(integer),
    workDoneToken,
  }),
  [PreviewPlanRequest.method]: object({ plan: string }),
  [SweepRequest.method]: object({
    model: string,
    methods: array(planMethod),
    counts: array(integer),
    calibration: array(fileAndField),
    evaluation: object({ file: string, field: optional(fieldSpecSchema) }),
    metric: literal('loss', 'perplexity', 'kl', 'top1Agreement', 'accuracy'),
    seed: integer,
    maxRows: optional(integer),
    workDoneToken,
  }),
  [ExportPreviewRequest.method]: object({ plan: string }),
  [ExportPlanRequest.method]: object({
    plan: string,
    format: literal('huggingface', 'onnx'),
    target: string,
    overwrite: optional(boolean),
    workDoneToken,
  }),
};
