/**
 * Runs the fuzz surfaces outside node:test, for `npm run fuzz` (scripts/fuzz.mjs): the same
 * properties, set-up and oracle as the test files, without node:test's bookkeeping around every
 * await (10-20% of the CPU, README.md), and one surface or a few at a time. FUZZ_ONLY=<surface>[,<surface>] picks
 * surfaces; FUZZ_INPUTS and FUZZ_SECONDS bound each (harness.ts). FUZZ_REPORT=<file> appends one JSON
 * line per finished surface. Exit 1 if any surface failed.
 */
import { appendFileSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { openPlainGroup, PLAIN, plainGroups, surfaceReports } from './harness';

async function main(): Promise<number> {
  if (!PLAIN) throw new Error('plainRunner.ts needs FUZZ_PLAIN=1 (scripts/fuzz.mjs sets it)');
  const files = readdirSync(__dirname).filter((name) => name.endsWith('.test.ts')).sort();
  for (const file of files) {
    openPlainGroup();
    await import(path.join(__dirname, file));
  }
  const known = plainGroups.flatMap((group) => group.surfaces.map((s) => s.name));
  const only = process.env.FUZZ_ONLY ? process.env.FUZZ_ONLY.split(',').map((name) => name.trim()).filter(Boolean) : known;
  const unknown = only.filter((name) => !known.includes(name));
  if (unknown.length) throw new Error(`no surface ${unknown.join(', ')}; the surfaces are ${known.join(', ')}`);
  let failed = 0;
  for (const group of plainGroups) {
    const selected = group.surfaces.filter((s) => only.includes(s.name));
    if (selected.length === 0) continue;
    for (const setup of group.setup) await setup();
    try {
      for (const { name, title, body } of selected) {
        const before = surfaceReports.length;
        try {
          await body();
        } catch (error) {
          failed++;
          console.error(`FAIL ${name} (${title}): ${error instanceof Error ? error.message : String(error)}`);
          if (process.env.FUZZ_REPORT) appendFileSync(process.env.FUZZ_REPORT, `${JSON.stringify({ surface: name, failed: true, message: String(error instanceof Error ? error.message : error).slice(0, 2000) })}\n`);
          continue;
        }
        const report = surfaceReports[before];
        if (report && process.env.FUZZ_REPORT) appendFileSync(process.env.FUZZ_REPORT, `${JSON.stringify({ ...report, date: new Date().toISOString() })}\n`);
      }
    } finally {
      for (const teardown of group.teardown) await teardown();
    }
  }
  return failed > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(2);
  },
);
