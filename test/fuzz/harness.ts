/**
 * The fuzz suite's one oracle and its bookkeeping, shared by every surface.
 *
 * - `npm test` (the `fuzz` stage) runs each surface on a fixed number of inputs from a fixed seed,
 *   so CI is repeatable and time-boxed; `npm run fuzz -- --seconds N` sets FUZZ_SECONDS and each
 *   surface then runs for that long from a fresh seed.
 * - The oracle: a valid input is accepted, an invalid one is a user error (the project's own kind)
 *   whose message names the file, carries no stack lines and stays under the message cap; always
 *   within a time limit and with bounded memory.
 * - A failing input is written to test/fuzz/regressions/<surface>-<hash>.json and replayed first on
 *   every later run, so a found bug stays found.
 */
import fc from 'fast-check';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { isUserError, MAX_MESSAGE_CHARS } from '../../server/src/errors';

const REGRESSIONS = path.join(__dirname, 'regressions');
const SECONDS = Number(process.env.FUZZ_SECONDS ?? 0);

/** Inputs per surface in the time-boxed (CI) mode. */
export const CI_RUNS = Number(process.env.FUZZ_RUNS ?? 200);

/** Longest one input may take before it counts as a hang. */
export const INPUT_TIME_LIMIT_MS = 5_000;

/** Heap growth over one surface's run that counts as unbounded allocation. */
const HEAP_LIMIT_BYTES = 1024 * 2 ** 20;

/** The error contract for what a user's file does wrong. */
export function assertUserError(error: unknown, file: string): void {
  if (!isUserError(error)) throw new Error(`not a user error: ${error instanceof Error ? error.stack : String(error)}`);
  const message = error.message;
  assert.ok(message.length <= MAX_MESSAGE_CHARS + 1, `message is ${message.length} characters long`);
  assert.ok(!/\n\s+at /.test(message), `message carries a stack: ${message.slice(0, 300)}`);
  assert.ok(message.includes(path.basename(file)), `message does not name ${path.basename(file)}: ${message.slice(0, 300)}`);
}

/** Runs `work`, which may succeed or throw a user error about `file`, within the time limit. */
export async function expectCleanOutcome(file: string, work: () => Promise<unknown>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`took more than ${INPUT_TIME_LIMIT_MS} ms`)), INPUT_TIME_LIMIT_MS);
  });
  try {
    await Promise.race([work(), deadline]);
  } catch (error) {
    assertUserError(error, file);
  } finally {
    clearTimeout(timer);
  }
}

export interface SurfaceReport {
  surface: string;
  inputs: number;
  replayed: number;
}

/** A surface's input as stored in a regression fixture: file bytes, base64. */
type Fixture = { surface: string; input: string };

function loadFixtures(surface: string): Uint8Array[] {
  if (!existsSync(REGRESSIONS)) return [];
  return readdirSync(REGRESSIONS)
    .filter((name) => name.startsWith(`${surface}-`) && name.endsWith('.json'))
    .sort()
    .map((name) => Buffer.from((JSON.parse(readFileSync(path.join(REGRESSIONS, name), 'utf8')) as Fixture).input, 'base64'));
}

function saveFixture(surface: string, input: Uint8Array): string {
  mkdirSync(REGRESSIONS, { recursive: true });
  const hash = createHash('sha256').update(input).digest('hex').slice(0, 16);
  const file = path.join(REGRESSIONS, `${surface}-${hash}.json`);
  writeFileSync(file, `${JSON.stringify({ surface, input: Buffer.from(input).toString('base64') } satisfies Fixture)}\n`);
  return file;
}

/**
 * Runs `property` on the surface's saved regressions, then on generated inputs; the first failing
 * input is saved (fast-check has shrunk it by then) and the run fails with its path.
 */
export async function fuzzSurface(surface: string, inputs: fc.Arbitrary<Uint8Array>, property: (input: Uint8Array) => Promise<void>, ciRuns = CI_RUNS): Promise<SurfaceReport> {
  const fixtures = loadFixtures(surface);
  for (const fixture of fixtures) await property(fixture);
  const heapBefore = process.memoryUsage().heapUsed;
  let count = 0;
  let failing: Uint8Array | undefined;
  let failure: unknown;
  const result = await fc.check(
    fc.asyncProperty(inputs, async (input) => {
      count++;
      try {
        await property(input);
      } catch (error) {
        failing = input;
        failure = error;
        throw error;
      }
    }),
    SECONDS > 0 ? { numRuns: Number.MAX_SAFE_INTEGER, interruptAfterTimeLimit: SECONDS * 1000, markInterruptAsFailure: false } : { numRuns: ciRuns, seed: seedOf(surface) },
  );
  if (result.failed) {
    const saved = failing ? saveFixture(surface, failing) : '(no input)';
    throw new Error(`${surface}: input ${saved} fails after ${count} inputs: ${failure instanceof Error ? failure.message : String(failure ?? '')}\n${(fc.defaultReportMessage(result) ?? '').slice(0, 2000)}`);
  }
  const grown = process.memoryUsage().heapUsed - heapBefore;
  assert.ok(grown < HEAP_LIMIT_BYTES, `${surface}: the heap grew by ${Math.round(grown / 2 ** 20)} MB`);
  const report = { surface, inputs: count, replayed: fixtures.length };
  console.log(`fuzz ${surface}: ${count} inputs, ${fixtures.length} regressions replayed`);
  return report;
}

/** A fixed seed per surface, so the CI inputs do not change from run to run. */
function seedOf(surface: string): number {
  return createHash('sha256').update(surface).digest().readInt32LE(0);
}

export const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text);

/**
 * JSON values that are deep, wide, huge or prototype-named, where parsers and messages break. The
 * huge ones (30,000 deep, 300,000 wide or long) cost milliseconds each to build, write and parse
 * and vary in one number only, so they are drawn less often than the varied small values; at equal
 * weights they took most of each surface's time.
 */
export const hostileJson: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 6, arbitrary: fc.jsonValue({ maxDepth: 4 }) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 30_000 }).map((depth) => JSON.parse('['.repeat(depth) + ']'.repeat(depth)) as unknown) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 300_000 }).map((length) => new Array<number>(length).fill(1)) },
  { weight: 2, arbitrary: fc.constantFrom('constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf') },
  { weight: 2, arbitrary: fc.constantFrom(1e9, 1e300, -1, 0, 0.5, Number.MAX_SAFE_INTEGER, 2 ** 53 + 2) },
  { weight: 3, arbitrary: fc.string({ maxLength: 200 }) },
  { weight: 1, arbitrary: fc.constantFrom('x'.repeat(300_000)) },
);

/** JSON text: valid, hostile, or cut short / corrupted. */
export function jsonText(value: fc.Arbitrary<unknown>): fc.Arbitrary<Uint8Array> {
  const serialize = (v: unknown) => {
    try {
      return JSON.stringify(v) ?? 'null';
    } catch {
      // Deeper than JSON.stringify can go: write the nesting out by hand.
      return '['.repeat(30_000) + ']'.repeat(30_000);
    }
  };
  return fc.oneof(
    { weight: 3, arbitrary: value.map((v) => utf8(serialize(v))) },
    { weight: 1, arbitrary: fc.tuple(value, fc.nat()).map(([v, cut]) => { const text = serialize(v); return utf8(text.slice(0, cut % (text.length + 1))); }) },
    { weight: 1, arbitrary: fc.tuple(value, fc.nat(), fc.integer({ min: 0, max: 255 })).map(([v, at, byte]) => { const bytes = utf8(serialize(v)); if (bytes.length > 0) bytes[at % bytes.length] = byte; return bytes; }) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 512 }) },
  );
}
