// `npm start`: build and package the extension, install it into a persistent code-server
// profile, and serve VS Code in the browser with the demo/ workspace open. Ctrl-C stops it.
// PORT picks the port (default 8080; a free one is used when it is busy).
//
// The preparation (apt packages, the build, vsce, installing code-server and the extension) prints
// hundreds of lines; it runs as a child whose output goes to a log file, so the terminal shows a few
// lines of status and the URL last. On failure the log's tail is printed.

import { spawnSync } from 'node:child_process';
import { appendFileSync, closeSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cacheRoot, findFreePort, installExtension, launchCodeServer, ensureCodeServer } from './codeServer.mjs';
import { packageExtension, repoRoot } from './package.mjs';

const profile = join(cacheRoot(), 'start-profile');
const dirs = { userDataDir: join(profile, 'user-data'), extensionsDir: join(profile, 'extensions') };
const logFile = join(cacheRoot(), 'start.log');

/** Everything before serving; its output is the log file's. */
async function prepare() {
  const vsix = packageExtension();
  await ensureCodeServer();
  console.log(await installExtension(vsix, dirs));
}

function prepareLogged() {
  mkdirSync(cacheRoot(), { recursive: true });
  const shown = relative(process.cwd(), logFile).startsWith('..') ? logFile : relative(process.cwd(), logFile);
  console.log(`Building MoE Studio and installing it into code-server (the first run also installs code-server, about a minute)…\n  details: ${shown}`);
  const fd = openSync(logFile, 'w');
  const result = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--prepare'], { cwd: repoRoot, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  if (result.status !== 0) {
    const tail = readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-40).join('\n');
    throw new Error(`Preparing failed (exit ${result.status ?? result.signal}). The end of ${logFile}:\n\n${tail}`);
  }
}

async function main() {
  prepareLogged();
  const preferred = Number(process.env.PORT ?? 8080);
  const port = await findFreePort(preferred);
  const server = await launchCodeServer({
    folder: join(repoRoot, 'demo'),
    port,
    ...dirs,
    log: (line) => appendFileSync(logFile, `code-server | ${line}\n`),
  });

  const rule = '='.repeat(64);
  const busy = port !== preferred ? `  (port ${preferred} was busy)\n` : '';
  console.log(`\n${rule}\n  MoE Studio is running in VS Code at:\n\n      ${server.url}\n${busy}\n  Workspace: demo/   Log: ${logFile}\n  Press Ctrl-C to stop.\n${rule}\n`);

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    console.log('\nStopping code-server…');
    await server.stop();
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  server.process.on('exit', (code, signal) => {
    if (stopping) return;
    console.error(`code-server exited (code ${code}, signal ${signal}); its output is in ${logFile}.`);
    process.exit(code ?? 1);
  });
}

(process.argv.includes('--prepare') ? prepare() : main()).catch((error) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
