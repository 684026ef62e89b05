// `npm start`: build and package the extension, install it into a persistent code-server
// profile, and serve VS Code in the browser with the demo/ workspace open. Ctrl-C stops it.
// PORT picks the port (default 8080; a free one is used when it is busy).

import { join } from 'node:path';
import { cacheRoot, findFreePort, installExtension, launchCodeServer, ensureCodeServer } from './codeServer.mjs';
import { packageExtension, repoRoot } from './package.mjs';

async function main() {
  const vsix = packageExtension();
  await ensureCodeServer();
  const profile = join(cacheRoot(), 'start-profile');
  const dirs = { userDataDir: join(profile, 'user-data'), extensionsDir: join(profile, 'extensions') };
  console.log(await installExtension(vsix, dirs));

  const preferred = Number(process.env.PORT ?? 8080);
  const port = await findFreePort(preferred);
  if (port !== preferred) console.log(`Port ${preferred} is busy; using ${port}.`);
  const server = await launchCodeServer({
    folder: join(repoRoot, 'demo'),
    port,
    ...dirs,
    log: (line) => console.log(`  code-server | ${line}`),
  });

  const rule = '='.repeat(64);
  console.log(`\n${rule}\n  MoE Studio is running in VS Code at:\n\n      ${server.url}\n\n  Workspace: demo/   Profile: ${profile}\n  Press Ctrl-C to stop.\n${rule}\n`);

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
    console.error(`code-server exited (code ${code}, signal ${signal}).`);
    process.exit(code ?? 1);
  });
}

main().catch((error) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
