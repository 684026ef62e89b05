/**
 * The per-expert figures a hover shows, read from a profile JSON file. Profiles are the profile stage's
 * `ProfileFile` (arrays per layer: `tokenCounts`, `usageShare`, `softCounts`, `reap`), but a plan may
 * name an older or hand-written one, so this also reads the plan methods' `LayerStatistics` names
 * (`tokenCount`, `softCount`, `reapScore`) and per-expert objects (`layers[i].experts[j]`). Anything
 * else yields undefined: a hover without statistics, never an error.
 */

export interface ExpertStatistics {
  /** Share (0..1) of the layer's routed slots that went to the expert. */
  tokenShare?: number;
  tokenCount?: number;
  softCount?: number;
  reap?: number;
}

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function finite(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

/** The first of `keys` whose value in `source` is an array. */
function arrayAt(source: Json, keys: readonly string[]): unknown[] | undefined {
  for (const key of keys) {
    if (Array.isArray(source[key])) return source[key] as unknown[];
  }
  return undefined;
}

function firstNumber(source: Json, keys: readonly string[]): number | undefined {
  for (const key of keys) {
    const value = finite(source[key]);
    if (value !== undefined) return value;
  }
  return undefined;
}

const SHARE_KEYS = ['usageShare', 'tokenShare', 'share'];
const COUNT_KEYS = ['tokenCounts', 'tokenCount', 'tokens', 'count'];
const SOFT_KEYS = ['softCounts', 'softCount'];
const REAP_KEYS = ['reap', 'reapScore', 'reapScores'];

/** The entry of a profile's `layers` for decoder layer `layer`: by its `layer` field, or by position when entries have none. */
function layerEntry(profileJson: unknown, layer: number): Json | undefined {
  if (!isObject(profileJson) || !Array.isArray(profileJson.layers)) return undefined;
  const layers = profileJson.layers as unknown[];
  const byField = layers.find((entry) => isObject(entry) && entry.layer === layer);
  if (byField) return byField as Json;
  const positional = layers.every((entry) => !isObject(entry) || entry.layer === undefined);
  const entry = positional ? layers[layer] : undefined;
  return isObject(entry) ? entry : undefined;
}

export function profileStatsForHover(profileJson: unknown, layer: number, expert: number): ExpertStatistics | undefined {
  const entry = layerEntry(profileJson, layer);
  if (!entry || !Number.isInteger(expert) || expert < 0) return undefined;
  let stats: ExpertStatistics;
  const experts = entry.experts;
  if (Array.isArray(experts)) {
    const one = experts[expert];
    if (!isObject(one)) return undefined;
    stats = {
      tokenShare: firstNumber(one, SHARE_KEYS),
      tokenCount: firstNumber(one, COUNT_KEYS),
      softCount: firstNumber(one, SOFT_KEYS),
      reap: firstNumber(one, REAP_KEYS),
    };
  } else {
    const at = (keys: readonly string[]) => finite(arrayAt(entry, keys)?.[expert]);
    const counts = arrayAt(entry, COUNT_KEYS);
    const totalCount = counts?.reduce<number>((sum, c) => sum + (finite(c) ?? 0), 0);
    const tokenCount = at(COUNT_KEYS);
    stats = {
      tokenShare: at(SHARE_KEYS) ?? (tokenCount !== undefined && totalCount ? tokenCount / totalCount : undefined),
      tokenCount,
      softCount: at(SOFT_KEYS),
      reap: at(REAP_KEYS),
    };
  }
  const present = Object.fromEntries(Object.entries(stats).filter(([, v]) => v !== undefined)) as ExpertStatistics;
  return Object.keys(present).length > 0 ? present : undefined;
}
