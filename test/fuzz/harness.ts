/**
 * The fuzz suite's one oracle and its bookkeeping, shared by every surface.
 *
 * - `npm test` (the `fuzz` stage) runs each surface as a node:test test on a fixed number of inputs
 *   from a fixed seed, so CI is repeatable and time-boxed.
 * - `npm run fuzz` (scripts/fuzz.mjs) runs the same surfaces outside node:test (FUZZ_PLAIN=1, see
 *   plainRunner.ts) from a fresh seed (or FUZZ_SEED), for FUZZ_INPUTS inputs or FUZZ_SECONDS seconds
 *   a surface, whichever comes first, one surface or a few at a time (FUZZ_ONLY). Outside node:test
 *   the same inputs cost 10-20% less CPU (README.md).
 * - The oracle: a valid input is accepted, an invalid one is a user error (the project's own kind)
 *   whose message names the file, carries no stack lines and stays under the message cap; always
 *   within a time limit and with bounded memory.
 * - A failing input is written to test/fuzz/regressions/<surface>-<hash>.json and replayed first on
 *   every later run, so a found bug stays found.
 */
import fc from 'fast-check';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { accessSync, constants, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { isUserError, MAX_MESSAGE_CHARS } from '../../server/src/errors';

const REGRESSIONS = path.join(__dirname, 'regressions');
const SECONDS = Number(process.env.FUZZ_SECONDS ?? 0);
/** Long runs: stop a surface after this many inputs (and after FUZZ_SECONDS, whichever is first). */
const INPUTS = Number(process.env.FUZZ_INPUTS ?? 0);
const LONG = SECONDS > 0 || INPUTS > 0;

/** Outside node:test: surfaces are collected here and run by plainRunner.ts. */
export const PLAIN = process.env.FUZZ_PLAIN === '1';

export interface PlainSurface {
  name: string;
  title: string;
  body: () => Promise<unknown>;
}

/** One test file's surfaces with its set-up and tear-down, which run only if one of them is selected. */
export interface PlainGroup {
  setup: (() => unknown)[];
  teardown: (() => unknown)[];
  surfaces: PlainSurface[];
}

export const plainGroups: PlainGroup[] = [];

/** Every surface's report so far, for the plain runner's summary. */
export const surfaceReports: SurfaceReport[] = [];

/** plainRunner.ts opens a group before importing each test file. */
export function openPlainGroup(): void {
  plainGroups.push({ setup: [], teardown: [], surfaces: [] });
}

function currentGroup(): PlainGroup {
  if (plainGroups.length === 0) openPlainGroup();
  return plainGroups[plainGroups.length - 1];
}

/** `before` of the file's surfaces, in node:test or in the plain runner. */
export function beforeSurfaces(fn: () => unknown): void {
  if (PLAIN) currentGroup().setup.push(fn);
  else before(fn);
}

export function afterSurfaces(fn: () => unknown): void {
  if (PLAIN) currentGroup().teardown.push(fn);
  else after(fn);
}

/** One surface: a node:test test in CI, a plain async function in a long run. */
export function surface(name: string, title: string, body: () => Promise<unknown>): void {
  if (PLAIN) currentGroup().surfaces.push({ name, title, body });
  else test(title, async () => {
    await body();
  });
}

/**
 * Where surfaces write their inputs: FUZZ_TMPDIR, else a memory file system where there is one.
 * Overwriting a small file cost 250 µs on the machine's disk and 16 µs on /dev/shm, a quarter of
 * an input's time on the fastest surfaces; the inputs are kilobytes (a few megabytes at most).
 */
export const FUZZ_TMP = process.env.FUZZ_TMPDIR ?? (writable('/dev/shm') ? '/dev/shm' : tmpdir());

function writable(folder: string): boolean {
  try {
    accessSync(folder, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

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
  seed: number;
  wallSeconds: number;
  /** User + system CPU of this process (a reader child process's CPU is not in it). */
  cpuSeconds: number;
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
  // The machine is shared, so rates are per CPU-second of this process, not per wall second.
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  const seed = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : LONG ? Date.now() ^ (Math.random() * 2 ** 31) : seedOf(surface);
  let count = 0;
  let failing: Uint8Array | undefined;
  let failure: unknown;
  const result = await fc.check(
    fc.asyncProperty(inputs, async (input) => {
      count++;
      // A long run says how far it is, so a slow surface can be judged (and stopped) before its end.
      if (LONG && count % 10_000 === 0) console.log(`fuzz ${surface}: ${count} inputs after ${((performance.now() - started) / 1000).toFixed(0)} s`);
      try {
        await property(input);
      } catch (error) {
        failing = input;
        failure = error;
        throw error;
      }
    }),
    LONG
      ? { seed, numRuns: INPUTS > 0 ? INPUTS : Number.MAX_SAFE_INTEGER, ...(SECONDS > 0 ? { interruptAfterTimeLimit: SECONDS * 1000, markInterruptAsFailure: false } : {}) }
      : { numRuns: ciRuns, seed },
  );
  if (result.failed) {
    const saved = failing ? saveFixture(surface, failing) : '(no input)';
    throw new Error(`${surface}: input ${saved} fails after ${count} inputs: ${failure instanceof Error ? failure.message : String(failure ?? '')}\n${(fc.defaultReportMessage(result) ?? '').slice(0, 2000)}`);
  }
  const grown = process.memoryUsage().heapUsed - heapBefore;
  assert.ok(grown < HEAP_LIMIT_BYTES, `${surface}: the heap grew by ${Math.round(grown / 2 ** 20)} MB`);
  const cpu = process.cpuUsage(cpuBefore);
  const report: SurfaceReport = { surface, inputs: count, replayed: fixtures.length, seed, wallSeconds: (performance.now() - started) / 1000, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
  console.log(
    `fuzz ${surface}: ${count} inputs (seed ${seed}) in ${report.wallSeconds.toFixed(1)} s, ${report.cpuSeconds.toFixed(1)} CPU-s: ` +
      `${Math.round(count / Math.max(report.cpuSeconds, 1e-3))} inputs per CPU-s; ${fixtures.length} regressions replayed`,
  );
  surfaceReports.push(report);
  return report;
}

/** A fixed seed per surface, so the CI inputs do not change from run to run. */
function seedOf(surface: string): number {
  return createHash('sha256').update(surface).digest().readInt32LE(0);
}

export const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text);

/**
 * JSON values that are deep, wide, huge or prototype-named, where parsers and messages break. The
 * huge ones (up to 30,000 deep, 300,000 wide or long) cost milliseconds each to build, write and
 * parse and vary in one number only, so about 1 value in 100 is one; at 1 in 5 they took most of
 * each surface's time. Mid-size ones (up to 3,000 deep, wide or long) are drawn often: they are
 * past the message cap and deep enough for a naive recursion's cost to show, and cheap.
 */
export const hostileJson: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 120, arbitrary: fc.jsonValue({ maxDepth: 4 }) },
  { weight: 8, arbitrary: fc.integer({ min: 1, max: 3_000 }).map(nested) },
  { weight: 8, arbitrary: fc.integer({ min: 1, max: 3_000 }).map((length) => new Array<number>(length).fill(1)) },
  { weight: 4, arbitrary: fc.integer({ min: 1, max: 3_000 }).map((length) => 'x'.repeat(length)) },
  { weight: 40, arbitrary: fc.constantFrom('constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf') },
  { weight: 40, arbitrary: fc.constantFrom(1e9, 1e300, -1, 0, 0.5, Number.MAX_SAFE_INTEGER, 2 ** 53 + 2) },
  { weight: 60, arbitrary: fc.string({ maxLength: 200 }) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 30_000 }).map(nested) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 300_000 }).map((length) => new Array<number>(length).fill(1)) },
  { weight: 1, arbitrary: fc.constantFrom('x'.repeat(300_000)) },
);

/** `depth` nested empty arrays, built from text: recursion would overflow the stack at 30,000. */
function nested(depth: number): unknown {
  return JSON.parse('['.repeat(depth) + ']'.repeat(depth)) as unknown;
}

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
