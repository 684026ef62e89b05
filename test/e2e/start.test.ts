// `npm start` as a new user sees it (issue 17: it printed about 600 lines of apt and build output
// before the URL): a couple of status lines, then the URL, clearly, last; the build, apt and
// code-server output in ~/.cache/moe-studio/start.log. The URL serves the workbench, and Ctrl-C
// (SIGINT) stops code-server.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { cacheRoot, ensureCodeServer } from '../../scripts/codeServer.mjs';
import { prerequisite, repoRoot } from '../support/browser';

let child: ReturnType<typeof spawn> | undefined;

after(() => {
  if (child && child.exitCode === null) child.kill('SIGKILL');
});

test('npm start prints a few lines, then the URL last, and keeps the build output in its log', { timeout: 600_000 }, async (t) => {
  if (!(await prerequisite(t, 'code-server', () => ensureCodeServer((line) => console.log(line))))) return;
  const started = spawn(process.execPath, [join(repoRoot, 'scripts', 'start.mjs')], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PORT: '18080' } });
  child = started;
  let stdout = '';
  let stderr = '';
  started.stdout!.on('data', (chunk) => (stdout += chunk));
  started.stderr!.on('data', (chunk) => (stderr += chunk));
  const ready = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 540_000);
    started.stdout!.on('data', () => {
      if (stdout.includes('Press Ctrl-C to stop.')) {
        clearTimeout(timer);
        resolve(true);
      }
    });
    started.once('exit', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
  assert.ok(ready, `npm start never printed its URL:\n${stdout}\n${stderr}`);

  const lines = stdout.trimEnd().split('\n');
  const url = /^\s+(http:\/\/127\.0\.0\.1:\d+\/?\S*)$/m.exec(stdout)?.[1];
  assert.ok(url, `no URL on a line of its own:\n${stdout}`);
  // Before the framed block: the status line and where the details are, nothing of the build.
  const frame = lines.findIndex((line) => /^=+$/.test(line));
  assert.ok(frame >= 0 && frame <= 4, `${frame} lines before the URL block:\n${stdout}`);
  assert.match(lines.slice(0, frame).join('\n'), /details: .*start\.log/);
  assert.ok(lines.length - frame <= 12, `the URL block is not last:\n${stdout}`);
  assert.equal(lines.at(-1), lines[frame], 'the output does not end with the URL block');
  assert.equal(stderr.trim(), '', `npm start wrote to stderr:\n${stderr}`);

  const log = readFileSync(join(cacheRoot(), 'start.log'), 'utf8');
  assert.match(log, /Packaged:|VSIX:/, 'the build output is not in start.log');
  assert.match(log, /code-server \| /, "code-server's output is not in start.log");

  const page = await fetch(url);
  assert.equal(page.status, 200);
  assert.match(await page.text(), /<html/i);

  const exited = new Promise<number | null>((resolve) => started.once('exit', (code) => resolve(code)));
  started.kill('SIGINT');
  assert.equal(await exited, 0);
  assert.match(stdout, /Stopping code-server/);
});
