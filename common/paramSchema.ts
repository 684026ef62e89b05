/**
 * A small checker for the parameters of `moeStudio/*` requests, the one place where the server
 * meets values it has not typed itself. Each schema answers the first problem it finds, naming the
 * field (`params.settings.maxRows should be a number or null, got "x"`), or undefined.
 *
 * Written here rather than taken from zod: the request shapes are a dozen flat objects, this module
 * is bundled into the extension host too, and 60 lines cover them without a dependency.
 */

export type Schema = (value: unknown, path: string) => string | undefined;

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (typeof value === 'object') return 'an object';
  return `${typeof value} ${String(value)}`;
}

const check = (test: (value: unknown) => boolean, expected: string): Schema => (value, path) =>
  test(value) ? undefined : `${path} should be ${expected}, got ${describe(value)}`;

export const string = check((value) => typeof value === 'string', 'a string');
export const number = check((value) => typeof value === 'number' && Number.isFinite(value), 'a number');
export const integer = check((value) => typeof value === 'number' && Number.isSafeInteger(value), 'an integer');
export const boolean = check((value) => typeof value === 'boolean', 'true or false');
/** Any JSON object whose keys the handler reads itself (method parameters). */
export const anyObject = check((value) => typeof value === 'object' && value !== null && !Array.isArray(value), 'an object');

export function literal(...allowed: readonly (string | number)[]): Schema {
  return check((value) => allowed.includes(value as string | number), `one of ${allowed.map((item) => JSON.stringify(item)).join(', ')}`);
}

export function optional(schema: Schema): Schema {
  return (value, path) => (value === undefined ? undefined : schema(value, path));
}

export function nullable(schema: Schema): Schema {
  return (value, path) => (value === null ? undefined : schema(value, path));
}

export function oneOf(expected: string, ...schemas: Schema[]): Schema {
  return (value, path) => (schemas.some((schema) => schema(value, path) === undefined) ? undefined : `${path} should be ${expected}, got ${describe(value)}`);
}

export function array(item: Schema, maxLength = 100_000): Schema {
  return (value, path) => {
    if (!Array.isArray(value)) return `${path} should be a list, got ${describe(value)}`;
    if (value.length > maxLength) return `${path} has ${value.length} entries, more than ${maxLength}`;
    for (let i = 0; i < value.length; i++) {
      const problem = item(value[i], `${path}[${i}]`);
      if (problem) return problem;
    }
    return undefined;
  };
}

/** Known keys are checked; unknown keys are allowed, so an older server accepts a newer client. */
export function object(shape: Record<string, Schema>): Schema {
  return (value, path) => {
    const notObject = anyObject(value, path);
    if (notObject) return notObject;
    for (const [key, schema] of Object.entries(shape)) {
      const problem = schema((value as Record<string, unknown>)[key], `${path}.${key}`);
      if (problem) return problem;
    }
    return undefined;
  };
}

/** A tagged union: `tag` picks the variant's schema. */
export function tagged(tag: string, variants: Record<string, Schema>): Schema {
  return (value, path) => {
    const notObject = anyObject(value, path);
    if (notObject) return notObject;
    const kind = (value as Record<string, unknown>)[tag];
    if (typeof kind !== 'string' || !Object.hasOwn(variants, kind)) return literal(...Object.keys(variants))(kind, `${path}.${tag}`);
    return variants[kind](value, path);
  };
}
