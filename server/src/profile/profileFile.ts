/**
 * The profile file: a versioned JSON document a person can read and diff (docs/profile-schema.md).
 * Saved atomically, so a cancelled or crashed run leaves the previous profile intact; loaded with
 * validation that says where a hand-edited or truncated file went wrong.
 */
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DATASET_EXTENSIONS } from '../../../common/protocol';
import { UserError } from '../errors';
import type { ProfileResult } from './profiler';
import { DEFAULT_GATING_THRESHOLDS } from './statistics';
import type { FieldSpec, LayerStatistics, ProfileDataset, ProfileFile, ProfileModel, ProfileSettings } from './types';

export const PROFILE_SCHEMA = 'moe-studio.profile';
export const PROFILE_VERSION = 1;
/** Non-integers are written with this many significant digits: plenty for charts and plans, and readable. */
export const SIGNIFICANT_DIGITS = 6;

export class ProfileFileError extends UserError {
  constructor(message: string) {
    super(message);
    this.name = 'ProfileFileError';
  }
}

/** What a profile is computed from, besides the data: the cache key covers all of it. */
export interface ProfileInputs {
  model: ProfileModel;
  dataset: Omit<ProfileDataset, 'tokens'>;
  settings: ProfileSettings;
}

/**
 * Equal keys mean an existing profile can be reused: same weights, same bytes of data, same way
 * of reading text, same settings, same schema version.
 */
export function profileCacheKey(inputs: ProfileInputs, gatingThresholds: readonly number[] = DEFAULT_GATING_THRESHOLDS): string {
  const { sequenceLength, maxRows, tokenRecords } = inputs.settings;
  // The chat rendering only when there is one, so profiles of other data keep their keys.
  const chat = inputs.dataset.chatTemplate ? [inputs.dataset.chatTemplate] : [];
  const identity = [PROFILE_VERSION, inputs.model.fingerprint, inputs.dataset.contentSha256, inputs.dataset.field, sequenceLength, maxRows, tokenRecords, gatingThresholds, ...chat];
  return createHash('sha256').update(JSON.stringify(identity)).digest('hex');
}

export function buildProfile(inputs: ProfileInputs, result: ProfileResult, createdAt = new Date()): ProfileFile {
  return {
    schema: PROFILE_SCHEMA,
    version: PROFILE_VERSION,
    createdAt: createdAt.toISOString(),
    cacheKey: profileCacheKey(inputs, result.gatingThresholds),
    model: inputs.model,
    dataset: { ...inputs.dataset, tokens: result.tokens },
    settings: inputs.settings,
    gatingThresholds: result.gatingThresholds,
    layers: result.layers,
    tokens: result.records,
  };
}

/** `<workspace>/.moe-studio/profiles/<dataset>.<model>.json`, e.g. `code.valid.jsonl.tiny-mixtral.json`. */
export function defaultProfilePath(workspaceFolder: string, datasetFile: string, modelFolder: string): string {
  const safe = (name: string) => name.replace(/[^\w.-]+/g, '_');
  return path.join(workspaceFolder, '.moe-studio', 'profiles', `${safe(path.basename(datasetFile))}.${safe(path.basename(path.resolve(modelFolder)))}.json`);
}

/** SHA-256 (hex) of a file's bytes, streamed. */
export async function fileSha256(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

// ---------------------------------------------------------------------------------------------
// Writing

/**
 * The file's text, in pieces: objects indented, number lists on one line, matrices one row per
 * line, one line per token record.
 */
export function* profileChunks(profile: ProfileFile): Generator<string> {
  const { layers, tokens, ...header } = profile;
  const entries = Object.entries(header);
  yield '{\n';
  for (const [key, value] of entries) yield `  ${JSON.stringify(key)}: ${formatValue(value, '  ')},\n`;
  yield '  "layers": [';
  for (let i = 0; i < layers.length; i++) yield `${i === 0 ? '\n' : ',\n'}    ${formatValue(layers[i], '    ')}`;
  yield layers.length > 0 ? '\n  ],\n' : '],\n';
  yield '  "tokens": [';
  for (let i = 0; i < tokens.length; i++) yield `${i === 0 ? '\n' : ',\n'}    ${compact(tokens[i])}`;
  yield tokens.length > 0 ? '\n  ]\n}\n' : ']\n}\n';
}

export function formatProfile(profile: ProfileFile): string {
  return [...profileChunks(profile)].join('');
}

/**
 * Writes beside the target, fsyncs, then renames over it: readers see the old file or the new
 * one, never half of one. On any failure the temporary file is removed and the old file stays.
 */
export async function saveProfile(file: string, profile: ProfileFile): Promise<void> {
  const folder = path.dirname(file);
  await fs.promises.mkdir(folder, { recursive: true });
  const temporary = path.join(folder, `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const handle = await fs.promises.open(temporary, 'wx');
  try {
    try {
      let pending = '';
      for (const chunk of profileChunks(profile)) {
        pending += chunk;
        if (pending.length >= 1 << 16) {
          await handle.write(pending);
          pending = '';
        }
      }
      await handle.write(pending);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.promises.rename(temporary, file);
  } catch (error) {
    await fs.promises.rm(temporary, { force: true });
    throw error;
  }
  // Make the rename itself durable; not every platform lets a directory be opened for this.
  try {
    const directory = await fs.promises.open(folder, 'r');
    await directory.sync().finally(() => directory.close());
  } catch {
    // Best effort.
  }
}

function formatValue(value: unknown, indent: string): string {
  if (Array.isArray(value)) {
    if (value.every(isPrimitive)) return compact(value);
    if (value.every((row) => Array.isArray(row) && row.every(isPrimitive))) {
      if (value.length === 0) return '[]';
      return `[\n${value.map((row) => `${indent}  ${compact(row)}`).join(',\n')}\n${indent}]`;
    }
    return `[\n${value.map((item) => `${indent}  ${formatValue(item, `${indent}  `)}`).join(',\n')}\n${indent}]`;
  }
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value).filter(([, item]) => item !== undefined);
    if (entries.every(([, item]) => isPrimitive(item) || (Array.isArray(item) && item.every(isPrimitive))) && compact(value).length <= 100) return compact(value);
    return `{\n${entries.map(([key, item]) => `${indent}  ${JSON.stringify(key)}: ${formatValue(item, `${indent}  `)}`).join(',\n')}\n${indent}}`;
  }
  return compact(value);
}

/** JSON on one line, with a space after each comma and colon, numbers rounded. */
function compact(value: unknown): string {
  if (typeof value === 'number') return JSON.stringify(roundNumber(value));
  if (Array.isArray(value)) return `[${value.map((item) => (item === undefined ? 'null' : compact(item))).join(', ')}]`;
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value).filter(([, item]) => item !== undefined);
    return `{${entries.map(([key, item]) => `${JSON.stringify(key)}: ${compact(item)}`).join(', ')}}`;
  }
  const text = JSON.stringify(value);
  if (text === undefined) throw new Error(`cannot write ${typeof value} to a profile`);
  return text;
}

function roundNumber(value: number): number {
  if (!Number.isFinite(value)) throw new Error(`cannot write ${value} to a profile`);
  if (Number.isInteger(value)) return value === 0 ? 0 : value;
  return Number(value.toPrecision(SIGNIFICANT_DIGITS));
}

function isPrimitive(value: unknown): boolean {
  return value === null || ['string', 'number', 'boolean'].includes(typeof value);
}

// ---------------------------------------------------------------------------------------------
// Reading

export async function loadProfile(file: string): Promise<ProfileFile> {
  let text: string;
  try {
    text = await fs.promises.readFile(file, 'utf8');
  } catch (error) {
    throw new ProfileFileError(`cannot read profile ${file}: ${(error as Error).message}`);
  }
  return parseProfile(text, file);
}

/**
 * The profile at `file` when it exists, is valid and was computed from the same inputs
 * (`cacheKey`); undefined when it must be (re)computed.
 */
export async function loadCurrentProfile(file: string, cacheKey: string): Promise<ProfileFile | undefined> {
  if (!fs.existsSync(file)) return undefined;
  try {
    const profile = await loadProfile(file);
    return profile.cacheKey === cacheKey ? profile : undefined;
  } catch (error) {
    if (error instanceof ProfileFileError) return undefined;
    throw error;
  }
}

export function parseProfile(text: string, source = 'profile'): ProfileFile {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    const hint = text.trim() === '' ? 'the file is empty' : `${(error as Error).message}; the file may be truncated or hand-edited`;
    throw new ProfileFileError(`${source} is not valid JSON: ${hint}`);
  }
  validateProfile(value, source);
  return value;
}

/** Checks every field the schema promises; the error names the source and the JSON path. */
export function validateProfile(value: unknown, source = 'profile'): asserts value is ProfileFile {
  const fail = (where: string, problem: string): never => {
    throw new ProfileFileError(`${source}: ${where} ${problem}`);
  };
  const object = (item: unknown, where: string): Record<string, unknown> =>
    typeof item === 'object' && item !== null && !Array.isArray(item) ? (item as Record<string, unknown>) : fail(where, `should be an object, found ${kindOf(item)}`);
  const string = (item: unknown, where: string): string => (typeof item === 'string' ? item : fail(where, `should be a string, found ${kindOf(item)}`));
  const number = (item: unknown, where: string): number => (typeof item === 'number' && Number.isFinite(item) ? item : fail(where, `should be a number, found ${kindOf(item)}`));
  const count = (item: unknown, where: string, min = 0): number => {
    const n = number(item, where);
    return Number.isInteger(n) && n >= min ? n : fail(where, `should be an integer ≥ ${min}, found ${n}`);
  };
  const array = (item: unknown, where: string, length?: number, why?: string): unknown[] => {
    if (!Array.isArray(item)) return fail(where, `should be a list, found ${kindOf(item)}`);
    if (length !== undefined && item.length !== length) return fail(where, `has ${item.length} entries, expected ${length}${why ? ` (${why})` : ''}`);
    return item;
  };
  const numbers = (item: unknown, where: string, length?: number, why?: string): number[] =>
    array(item, where, length, why).map((entry, i) => number(entry, `${where}[${i}]`));
  const matrix = (item: unknown, where: string, size: number): number[][] =>
    array(item, where, size, 'numExperts rows').map((row, i) => numbers(row, `${where}[${i}]`, size, 'numExperts columns'));

  const root = object(value, 'the file');
  if (root.schema !== PROFILE_SCHEMA) fail('the file', `is not a MoE Studio profile ("schema" should be "${PROFILE_SCHEMA}", found ${JSON.stringify(root.schema)})`);
  const version = number(root.version, '"version"');
  if (version > PROFILE_VERSION) fail('the file', `has version ${version}, written by a newer MoE Studio; this one reads version ${PROFILE_VERSION}`);
  if (version !== PROFILE_VERSION) fail('"version"', `should be ${PROFILE_VERSION}, found ${version}`);
  if (Number.isNaN(Date.parse(string(root.createdAt, 'createdAt')))) fail('createdAt', 'should be an ISO 8601 date');
  string(root.cacheKey, 'cacheKey');

  const model = object(root.model, 'model');
  for (const key of ['folder', 'architecture', 'fingerprint']) string(model[key], `model.${key}`);
  count(model.numLayers, 'model.numLayers');
  count(model.numExperts, 'model.numExperts', 1);
  count(model.topK, 'model.topK', 1);

  const dataset = object(root.dataset, 'dataset');
  for (const key of ['file', 'contentSha256']) string(dataset[key], `dataset.${key}`);
  const formats = Object.values(DATASET_EXTENSIONS);
  if (!formats.includes(dataset.format as never)) fail('dataset.format', `should be one of ${formats.join(', ')}, found ${JSON.stringify(dataset.format)}`);
  validateFieldSpec(dataset.field, fail);
  for (const key of ['rows', 'tokens', 'malformedRows']) count(dataset[key], `dataset.${key}`);
  array(dataset.firstMalformedLines, 'dataset.firstMalformedLines').forEach((line, i) => count(line, `dataset.firstMalformedLines[${i}]`, 1));

  const settings = object(root.settings, 'settings');
  count(settings.sequenceLength, 'settings.sequenceLength', 1);
  if (settings.maxRows !== null) count(settings.maxRows, 'settings.maxRows', 1);
  count(settings.tokenRecords, 'settings.tokenRecords');

  const thresholds = numbers(root.gatingThresholds, 'gatingThresholds');
  thresholds.forEach((threshold, i) => i > 0 && threshold <= thresholds[i - 1] && fail(`gatingThresholds[${i}]`, 'should be greater than the one before'));

  const layers = array(root.layers, 'layers');
  layers.forEach((item, i) => {
    const where = `layers[${i}]`;
    const layer = object(item, where) as Record<keyof LayerStatistics, unknown>;
    const index = count(layer.layer, `${where}.layer`);
    if (i > 0 && index <= (layers[i - 1] as LayerStatistics).layer) fail(`${where}.layer`, `should be greater than the layer before (${(layers[i - 1] as LayerStatistics).layer})`);
    const experts = count(layer.numExperts, `${where}.numExperts`, 1);
    const topK = count(layer.topK, `${where}.topK`, 1);
    if (topK > experts) fail(`${where}.topK`, `(${topK}) should not exceed numExperts (${experts})`);
    count(layer.tokens, `${where}.tokens`);
    count(layer.routedSlots, `${where}.routedSlots`);
    number(layer.meanEntropy, `${where}.meanEntropy`);
    for (const key of ['tokenCounts', 'usageShare', 'softCounts', 'fullSoftCounts', 'meanGate', 'reap', 'top1Share', 'routedEntropy'] as const) {
      numbers(layer[key], `${where}.${key}`, experts, 'numExperts');
    }
    matrix(layer.coActivation, `${where}.coActivation`, experts);
    matrix(layer.logitCosine, `${where}.logitCosine`, experts);
    if (layer.logitCorrelation !== undefined) matrix(layer.logitCorrelation, `${where}.logitCorrelation`, experts);
    numbers(layer.singleExpertShare, `${where}.singleExpertShare`, thresholds.length, 'one per gating threshold');
  });

  array(root.tokens, 'tokens').forEach((item, i) => {
    const where = `tokens[${i}]`;
    const token = object(item, where);
    for (const key of ['row', 'start', 'end', 'token']) count(token[key], `${where}.${key}`);
    const experts = array(token.experts, `${where}.experts`, layers.length, 'one per layer');
    const gates = array(token.gates, `${where}.gates`, layers.length, 'one per layer');
    experts.forEach((chosen, l) => {
      const ids = numbers(chosen, `${where}.experts[${l}]`);
      numbers(gates[l], `${where}.gates[${l}]`, ids.length, 'one per chosen expert');
    });
  });
}

function validateFieldSpec(item: unknown, fail: (where: string, problem: string) => never): asserts item is FieldSpec {
  const where = 'dataset.field';
  if (typeof item !== 'object' || item === null) fail(where, `should be an object, found ${kindOf(item)}`);
  const spec = item as Record<string, unknown>;
  const isName = (name: unknown) => typeof name === 'string' && name !== '';
  switch (spec.kind) {
    case 'string':
      return;
    case 'field':
    case 'chat':
      if (!isName(spec.field)) fail(`${where}.field`, 'should be a field name');
      return;
    case 'pair':
      if (!(Array.isArray(spec.fields) && spec.fields.length === 2 && spec.fields.every(isName))) fail(`${where}.fields`, 'should be two field names');
      if (typeof spec.separator !== 'string') fail(`${where}.separator`, 'should be a string');
      return;
    default:
      fail(`${where}.kind`, `should be "string", "field", "pair" or "chat", found ${JSON.stringify(spec.kind)}`);
  }
}

function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  return typeof value === 'object' ? 'an object' : `${typeof value} ${JSON.stringify(value)}`;
}
