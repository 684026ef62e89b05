#!/usr/bin/env node
// One build for everything: client and server bundles for Node (CommonJS, as VS Code loads
// extensions), the CLI, the inference worker, and the webview bundles for the browser.
// `node scripts/build.mjs --production` minifies; `--watch` rebuilds on change.
import * as esbuild from 'esbuild';
import { copyFile, mkdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const production = process.argv.includes('--production');
const watch = process.argv.includes('--watch');

const nodeBundle = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  sourcemap: !production,
  minify: production,
  // onnxruntime-node is a native addon shipped in node_modules; vscode is provided by the host.
  external: ['vscode', 'onnxruntime-node'],
  // Prefer ES modules: jsonc-parser's UMD `main` uses dynamic requires that esbuild cannot bundle.
  mainFields: ['module', 'main'],
  logLevel: 'warning',
  absWorkingDir: root,
};

const nodeEntries = [
  { entryPoints: ['client/src/extension.ts'], outfile: 'dist/client.js' },
  { entryPoints: ['server/src/server.ts'], outfile: 'dist/server.js' },
  { entryPoints: ['server/src/cli.ts'], outfile: 'dist/cli.js', banner: { js: '#!/usr/bin/env node' } },
  { entryPoints: ['server/src/runtime/worker.ts'], outfile: 'dist/runtimeWorker.js', optional: true },
  { entryPoints: ['server/src/runtime/layerWriterWorker.ts'], outfile: 'dist/layerWriterWorker.js', optional: true },
  { entryPoints: ['server/src/datasets/recordsWorker.ts'], outfile: 'dist/recordsWorker.js' },
  { entryPoints: ['server/src/checkpoint/tokenizerWorker.ts'], outfile: 'dist/tokenizerWorker.js' },
];

const webviewEntries = ['profile', 'planPreview'];

const builds = [
  ...nodeEntries
    .filter(({ entryPoints, optional }) => !optional || existsSync(join(root, entryPoints[0])))
    .map(({ optional: _optional, ...entry }) => ({ ...nodeBundle, ...entry })),
  {
    bundle: true,
    platform: 'browser',
    target: 'es2022',
    format: 'iife',
    sourcemap: !production,
    minify: production,
    logLevel: 'warning',
    absWorkingDir: root,
    entryPoints: webviewEntries.map((name) => `webview/src/${name}.ts`),
    outdir: 'dist/webview',
  },
];

await mkdir(join(root, 'dist/webview'), { recursive: true });
await copyFile(join(root, 'webview/style.css'), join(root, 'dist/webview/style.css'));

if (watch) {
  for (const options of builds) await (await esbuild.context(options)).watch();
  console.log('Watching for changes…');
} else {
  const started = Date.now();
  await Promise.all(builds.map((options) => esbuild.build(options)));
  console.log(`Built ${builds.length} bundles into dist/ in ${Date.now() - started} ms${production ? ' (production)' : ''}.`);
}
