/**
 * The editor side of profiling: finding models, guessing the text field, running a profile with
 * progress and cancellation, comparing profiles, and showing token routing in dataset documents
 * (decorations through `tokenRoutes`, hovers). The latest profile of each dataset is kept in memory
 * with an index of its tokens per line, built once, so a hover is a lookup even while a profile runs.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  MarkupKind,
  type CancellationToken,
  type Connection,
  type Hover,
  type InitializeParams,
  type ServerCapabilities,
  type TextDocuments,
} from 'vscode-languageserver/node';
import type { TextDocument } from 'vscode-languageserver-textdocument';
import {
  CompareProfilesRequest,
  DetectTextFieldRequest,
  FindModelsRequest,
  ProfileDatasetRequest,
  TokenRoutesRequest,
  type DatasetFormat,
  type ModelCandidate,
  type ProfileDatasetParams,
  type TokenRoute,
  type TokenRoutesResult,
} from '../../../common/protocol';
import { datasetFormatOf } from '../datasets/format';
import { sandboxedRecords } from '../datasets/sandboxedRecords';
import { UserError } from '../errors';
import { compareProfiles, defaultProfilePath, detectTextField, loadProfile, type ProfileFile } from '../profile';
import { DEFAULT_PROFILE_SETTINGS, profileDataset, profileProgressMessage, rowColumns, rowLines, sharedRuntimes } from '../profile/run';
import type { Health } from './health';
import type { HoverProviders } from './hovers';
import { runModelWork } from './modelWork';
import { safeHandler } from './safeHandler';
import { localPath } from './paths';

export interface ProfileFeatureOptions {
  /** Whether the workspace is trusted now: profiling runs a model, so it is refused otherwise. */
  isTrusted(): boolean;
  /** Dataset hovers join the plan hovers here. */
  hovers: HoverProviders;
}

export interface ProfileFeatures {
  /** Call from onInitialize: returns the capabilities to merge in. */
  initialize(params: InitializeParams): ServerCapabilities;
  dispose(): Promise<void>;
}

/** Model folders deeper than this below a workspace folder are not searched. */
const MODEL_SEARCH_DEPTH = 4;
const SKIPPED_FOLDERS = new Set(['node_modules', '.git', '.moe-studio', '__pycache__', '.venv']);
/** Rows sampled to guess the text field. */
const FIELD_SAMPLE_ROWS = 50;

export function registerProfileFeatures(
  connection: Connection,
  documents: TextDocuments<TextDocument>,
  health: Health,
  options: ProfileFeatureOptions,
): ProfileFeatures {
  const profiles = new DatasetProfiles(documents);

  connection.onRequest(FindModelsRequest.type, safeHandler(connection, FindModelsRequest.method, ({ folders }) => findModels(folders)));

  connection.onRequest(
    DetectTextFieldRequest.type,
    safeHandler(connection, DetectTextFieldRequest.method, async ({ uri }) => {
      const file = localPath(uri);
      const sample: unknown[] = [];
      for await (const record of sandboxedRecords(file, datasetFormatOf(file))) {
        if (record.value !== undefined) sample.push(record.value);
        if (sample.length >= FIELD_SAMPLE_ROWS) break;
      }
      return detectTextField(sample);
    }),
  );

  connection.onRequest(ProfileDatasetRequest.type, (params, token) =>
    safeHandler(connection, ProfileDatasetRequest.method, (p: ProfileDatasetParams, t) => runProfile(p, t))(params, token),
  );

  async function runProfile(params: ProfileDatasetParams, token: CancellationToken) {
    const datasetFile = localPath(params.uri);
    const name = path.basename(datasetFile);
    const request = {
      title: `Profiling ${name}`,
      untrusted: `Profiling runs the model in ${params.model}, and this workspace is not trusted. Trust the workspace (Workspaces: Manage Workspace Trust) to profile ${name}.`,
      workDoneToken: params.workDoneToken,
      token,
      starting: 'Loading the model',
    };
    return runModelWork({ connection, health, isTrusted: options.isTrusted }, request, async (signal, progress) => {
      const result = await profileDataset({
        datasetFile,
        modelFolder: params.model,
        field: params.field,
        workspaceFolder: params.workspaceFolder,
        settings: { ...DEFAULT_PROFILE_SETTINGS, ...params.settings },
        force: params.force,
        signal,
        onProgress: (update) => progress.report(Math.min(100, Math.floor((100 * update.tokens) / Math.max(1, update.totalTokensEstimate))), profileProgressMessage(update)),
        onEstimate: ({ summary }) => {
          progress.report(0, `Profiling: ${summary}`);
          connection.console.info(`Profiling ${name}: ${summary}`);
        },
      });
      profiles.set(datasetFile, result.profile);
      return result;
    });
  }

  connection.onRequest(
    TokenRoutesRequest.type,
    safeHandler(connection, TokenRoutesRequest.method, async ({ uri }): Promise<TokenRoutesResult> => {
      const file = localPath(uri);
      const index = await profiles.index(file, uri);
      if (!index) throw new UserError(`${path.basename(file)} has no current profile: profile it first (MoE Studio: Profile experts on this dataset).`);
      return index.routes();
    }),
  );

  connection.onRequest(
    CompareProfilesRequest.type,
    safeHandler(connection, CompareProfilesRequest.method, async ({ a, b }) => {
      const [profile, other] = await Promise.all([loadProfile(a), loadProfile(b)]);
      return compareProfiles(profile, other, path.basename(profile.dataset.file), path.basename(other.dataset.file));
    }),
  );

  options.hovers.add(async (params) => {
    if (!params.textDocument.uri.startsWith('file:')) return null;
    const file = fileURLToPath(params.textDocument.uri);
    if (!isLineDataset(file)) return null;
    try {
      return (await profiles.index(file, params.textDocument.uri))?.hover(params.position.line, params.position.character) ?? null;
    } catch (error) {
      connection.console.error(`Dataset hover failed for ${params.textDocument.uri}: ${error instanceof Error ? error.stack : error}`);
      return null;
    }
  });

  documents.onDidClose(({ document }) => profiles.forgetDocument(document.uri));
  connection.onShutdown(() => sharedRuntimes.close());

  return {
    initialize(params) {
      profiles.workspaceFolders = (params.workspaceFolders?.map((folder) => folder.uri) ?? (params.rootUri ? [params.rootUri] : []))
        .filter((uri) => uri.startsWith('file:'))
        .map((uri) => fileURLToPath(uri));
      return { hoverProvider: true };
    },
    dispose: () => sharedRuntimes.close(),
  };
}

// ---------------------------------------------------------------------------------------------
// The latest profile of each dataset and its per-line index

class DatasetProfiles {
  workspaceFolders: string[] = [];
  private readonly latest = new Map<string, ProfileFile>();
  private readonly fromDisk = new Map<string, Promise<ProfileFile | undefined>>();
  private readonly indexes = new Map<string, { key: string; index: Promise<RoutingIndex | undefined> }>();

  constructor(private readonly documents: TextDocuments<TextDocument>) {}

  set(datasetFile: string, profile: ProfileFile): void {
    this.latest.set(path.resolve(datasetFile), profile);
  }

  forgetDocument(uri: string): void {
    this.indexes.delete(uri);
  }

  /**
   * The index of the dataset's profile over its current text (the open document, else the file),
   * built once per profile and document version; undefined when there is no profile for this text.
   */
  async index(datasetFile: string, uri: string): Promise<RoutingIndex | undefined> {
    const profile = this.latest.get(path.resolve(datasetFile)) ?? (await this.loadFromDisk(datasetFile));
    if (!profile) return undefined;
    const document = this.documents.get(uri);
    const key = `${profile.cacheKey}\0${profile.createdAt}\0${document?.version ?? 'disk'}`;
    const cached = this.indexes.get(uri);
    if (cached?.key === key) return cached.index;
    const index = (async () => {
      const text = document ? document.getText() : await fs.promises.readFile(datasetFile, 'utf8');
      // Ranges from a profile of other bytes would point at the wrong tokens.
      if (createHash('sha256').update(text).digest('hex') !== profile.dataset.contentSha256) return undefined;
      return new RoutingIndex(profile, text);
    })();
    this.indexes.set(uri, { key, index });
    return index;
  }

  /** The newest saved profile of this dataset in a `.moe-studio/profiles/` folder above it or in the workspace. */
  private loadFromDisk(datasetFile: string): Promise<ProfileFile | undefined> {
    const resolved = path.resolve(datasetFile);
    let pending = this.fromDisk.get(resolved);
    if (!pending) {
      pending = findSavedProfile(resolved, this.workspaceFolders);
      this.fromDisk.set(resolved, pending);
    }
    return pending;
  }
}

async function findSavedProfile(datasetFile: string, workspaceFolders: string[]): Promise<ProfileFile | undefined> {
  const roots = new Set(workspaceFolders);
  for (let folder = path.dirname(datasetFile); ; folder = path.dirname(folder)) {
    roots.add(folder);
    if (path.dirname(folder) === folder) break;
  }
  // Any model: the default name is `<dataset>.<model>.json`, so the dataset part is known.
  const prefix = path.basename(defaultProfilePath('', datasetFile, 'model')).replace(/model\.json$/, '');
  const found: { profile: ProfileFile; created: number }[] = [];
  for (const root of roots) {
    const folder = path.join(root, '.moe-studio', 'profiles');
    let names: string[];
    try {
      names = await fs.promises.readdir(folder);
    } catch {
      continue;
    }
    for (const name of names.filter((entry) => entry.startsWith(prefix) && entry.endsWith('.json'))) {
      try {
        const profile = await loadProfile(path.join(folder, name));
        if (path.resolve(root, profile.dataset.file) === datasetFile) found.push({ profile, created: Date.parse(profile.createdAt) });
      } catch {
        // Not a profile we can read: the hover simply has nothing to show.
      }
    }
  }
  found.sort((a, b) => b.created - a.created);
  return found[0]?.profile;
}

interface LineTokens {
  row: number;
  /** Sorted, non-overlapping [start, end) columns of the line's recorded tokens, and their record index. */
  starts: Int32Array;
  ends: Int32Array;
  records: Int32Array;
  /** Decoded text of each token, when the row's text could be recovered. */
  texts?: string[];
  exact: boolean;
  summary: string;
}

/** Token records located in the document: built once per profile and document text. */
export class RoutingIndex {
  private readonly lines = new Map<number, LineTokens>();
  private readonly located: TokenRoute[] = [];

  constructor(
    private readonly profile: ProfileFile,
    text: string,
  ) {
    const format = profile.dataset.format;
    const documentLines = text.split(/\r\n|\r|\n/);
    const rows = rowsToLines(documentLines, format);
    const byRow = new Map<number, number[]>();
    profile.tokens.forEach((record, i) => {
      const list = byRow.get(record.row);
      if (list) list.push(i);
      else byRow.set(record.row, [i]);
    });
    for (const [row, recordIndices] of byRow) {
      const line = rows[row];
      if (line === undefined) continue;
      const columns = rowColumns(documentLines[line], format, profile.dataset.field);
      const spans = recordIndices.map((i) => {
        const [start, end] = columns.columns(profile.tokens[i].start, profile.tokens[i].end);
        return { i, start, end };
      });
      for (const { i, start, end } of spans) {
        this.located.push({ range: { start: { line, character: start }, end: { line, character: end } }, experts: profile.tokens[i].experts, gates: profile.tokens[i].gates });
      }
      const hoverable = columns.exact ? spans.filter((span) => span.end > span.start).sort((a, b) => a.start - b.start) : [];
      this.lines.set(line, {
        row,
        starts: Int32Array.from(hoverable, (span) => span.start),
        ends: Int32Array.from(hoverable, (span) => span.end),
        records: Int32Array.from(hoverable, (span) => span.i),
        texts: columns.text === undefined ? undefined : hoverable.map((span) => columns.text!.slice(profile.tokens[span.i].start, profile.tokens[span.i].end)),
        exact: columns.exact,
        summary: rowSummary(profile, row, recordIndices),
      });
    }
  }

  routes(): TokenRoutesResult {
    return { layers: this.profile.layers.map((layer) => layer.layer), numExperts: this.profile.model.numExperts, routes: this.located };
  }

  hover(line: number, character: number): Hover | null {
    const tokens = this.lines.get(line);
    if (!tokens) return null;
    let low = 0;
    let high = tokens.starts.length - 1;
    while (low <= high) {
      const middle = (low + high) >> 1;
      if (tokens.ends[middle] <= character) low = middle + 1;
      else if (tokens.starts[middle] > character) high = middle - 1;
      else {
        const record = this.profile.tokens[tokens.records[middle]];
        return {
          contents: { kind: MarkupKind.Markdown, value: tokenMarkdown(this.profile, record, tokens.texts?.[middle]) },
          range: { start: { line, character: tokens.starts[middle] }, end: { line, character: tokens.ends[middle] } },
        };
      }
    }
    return { contents: { kind: MarkupKind.Markdown, value: tokens.summary } };
  }
}

/** The 0-based line of each row (rows in `readRecords` order); CSV skips its header. */
function rowsToLines(lines: readonly string[], format: DatasetFormat): number[] {
  if (format === 'jsonl' || format === 'txt') return rowLines(lines);
  // Each CSV record is taken to be one line: a quoted field spanning lines shifts the rows after it.
  if (format === 'csv') return rowLines(lines).slice(1);
  return [];
}

function tokenMarkdown(profile: ProfileFile, record: ProfileFile['tokens'][number], text: string | undefined): string {
  const shown = text === undefined ? '' : ` ${inlineCode(text)}`;
  const rows = profile.layers.map((layer, l) => {
    const chosen = record.experts[l].map((expert, slot) => `**${expert}** (${record.gates[l][slot].toFixed(2)})`).join(', ');
    return `| ${layer.layer} | ${chosen || '(none)'} |`;
  });
  return [`**Token**${shown} · id ${record.token} · row ${record.row + 1}`, '', '| layer | experts (gate) |', '|---:|---|', ...rows].join('\n');
}

/** Top experts per layer over a row's recorded tokens: the share of its routed slots each one took. */
function rowSummary(profile: ProfileFile, row: number, recordIndices: readonly number[]): string {
  const rows = profile.layers.map((layer, l) => {
    const counts = new Float64Array(layer.numExperts);
    let slots = 0;
    for (const i of recordIndices) {
      for (const expert of profile.tokens[i].experts[l]) {
        if (expert >= 0 && expert < counts.length) {
          counts[expert]++;
          slots++;
        }
      }
    }
    const top = [...counts.keys()].sort((a, b) => counts[b] - counts[a]).slice(0, 3).filter((expert) => counts[expert] > 0);
    return `| ${layer.layer} | ${top.map((expert) => `**${expert}** (${Math.round((100 * counts[expert]) / Math.max(1, slots))}%)`).join(', ')} |`;
  });
  const tokens = recordIndices.length;
  return [`**Row ${row + 1}** · ${tokens} recorded token${tokens === 1 ? '' : 's'} · top experts per layer (share of routed slots)`, '', '| layer | experts |', '|---:|---|', ...rows].join('\n');
}

function inlineCode(text: string): string {
  const visible = text.replace(/\n/g, '↵').replace(/\t/g, '→');
  const fence = visible.includes('`') ? '`` ' : '`';
  return `${fence}${visible}${fence === '`' ? '`' : ' ``'}`;
}

// ---------------------------------------------------------------------------------------------
// Models in the workspace

export async function findModels(folders: readonly string[]): Promise<ModelCandidate[]> {
  const found: { candidate: ModelCandidate; depth: number }[] = [];
  const seen = new Set<string>();
  let level = folders.map((folder) => path.resolve(folder));
  for (let depth = 0; depth <= MODEL_SEARCH_DEPTH && level.length > 0; depth++) {
    const next: string[] = [];
    for (const folder of level) {
      if (seen.has(folder)) continue;
      seen.add(folder);
      let entries: fs.Dirent[];
      try {
        entries = await fs.promises.readdir(folder, { withFileTypes: true });
      } catch {
        continue;
      }
      const hasConfig = entries.some((entry) => entry.isFile() && entry.name === 'config.json');
      if (hasConfig && entries.some((entry) => entry.isFile() && entry.name.endsWith('.safetensors'))) {
        found.push({ candidate: { folder, architecture: await architectureOf(folder) }, depth });
      }
      for (const entry of entries) {
        if (entry.isDirectory() && !SKIPPED_FOLDERS.has(entry.name)) next.push(path.join(folder, entry.name));
      }
    }
    level = next;
  }
  return found.sort((a, b) => a.depth - b.depth || a.candidate.folder.localeCompare(b.candidate.folder)).map(({ candidate }) => candidate);
}

async function architectureOf(folder: string): Promise<string | undefined> {
  try {
    const config = JSON.parse(await fs.promises.readFile(path.join(folder, 'config.json'), 'utf8')) as { architectures?: unknown };
    return Array.isArray(config.architectures) && typeof config.architectures[0] === 'string' ? config.architectures[0] : undefined;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------

function isLineDataset(file: string): boolean {
  return /\.(jsonl|txt|csv)$/i.test(file);
}

