// The VSIX holds what the installed extension runs and nothing else: the bundles, and
// onnxruntime-node with only its linux-x64 native files.

import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { promisify } from 'node:util';
import yauzl from 'yauzl';
import { repoRoot } from '../../scripts/package.mjs';
import { freshVsix } from '../support/vsix';

/** Measured at 18.4 MB (onnxruntime's libonnxruntime.so.1 is 44 MB of it uncompressed). */
const MAX_COMPRESSED_BYTES = 40e6;
const MAX_UNCOMPRESSED_BYTES = 80e6;
const NATIVE = 'extension/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/';

interface Entry {
  name: string;
  size: number;
}

let vsixPath = '';
let entries: Entry[] = [];

async function listEntries(path: string): Promise<Entry[]> {
  const zip = await promisify<string, yauzl.Options, yauzl.ZipFile>(yauzl.open)(path, { lazyEntries: true });
  return new Promise((resolve, reject) => {
    const found: Entry[] = [];
    zip.on('entry', (entry: yauzl.Entry) => {
      found.push({ name: entry.fileName, size: entry.uncompressedSize });
      zip.readEntry();
    });
    zip.on('end', () => resolve(found));
    zip.on('error', reject);
    zip.readEntry();
  });
}

const names = () => entries.map((entry) => entry.name);

before(async () => {
  vsixPath = await freshVsix();
  entries = await listEntries(vsixPath);
});

test('holds the manifest and every bundle', () => {
  const bundles = ['extension.vsixmanifest', 'extension/package.json', 'extension/dist/client.js', 'extension/dist/server.js', 'extension/dist/cli.js', 'extension/dist/recordsWorker.js', 'extension/dist/tokenizerWorker.js'];
  // The build makes the inference worker once its source exists.
  if (existsSync(join(repoRoot, 'server', 'src', 'runtime', 'worker.ts'))) bundles.push('extension/dist/runtimeWorker.js', 'extension/dist/layerWriterWorker.js');
  for (const file of bundles) {
    assert.ok(names().includes(file), `${file} missing from ${vsixPath}`);
  }
  const webview = names().filter((name) => name.startsWith('extension/dist/webview/'));
  assert.ok(webview.includes('extension/dist/webview/profile.js'), `profile.js missing; webview files: ${webview.join(', ')}`);
  assert.ok(webview.includes('extension/dist/webview/style.css'), `style.css missing; webview files: ${webview.join(', ')}`);
});

test('holds every file the manifest points at', async () => {
  // main, icon, and paths in contributes (jsonValidation urls, grammars, icons) are './'-relative.
  const manifest = JSON.parse(await readFile(join(repoRoot, 'package.json'), 'utf8'));
  const referenced: string[] = [];
  (function collect(value: unknown): void {
    if (typeof value === 'string' && value.startsWith('./')) referenced.push(`extension/${value.slice(2)}`);
    else if (Array.isArray(value)) value.forEach(collect);
    else if (value && typeof value === 'object') Object.values(value).forEach(collect);
  })([manifest.main, manifest.icon, manifest.contributes]);
  assert.deepEqual(referenced.filter((file) => !names().includes(file)), []);
});

test('targets linux-x64 in its manifest', async () => {
  // The target platform in extension.vsixmanifest lets VS Code refuse the VSIX on other platforms.
  const zip = await promisify<string, yauzl.Options, yauzl.ZipFile>(yauzl.open)(vsixPath, { lazyEntries: true });
  const manifest = await new Promise<string>((resolve, reject) => {
    zip.on('entry', (entry: yauzl.Entry) => {
      if (entry.fileName !== 'extension.vsixmanifest') return zip.readEntry();
      zip.openReadStream(entry, (error, stream) => {
        if (error) return reject(error);
        const chunks: Buffer[] = [];
        stream.on('data', (chunk: Buffer) => chunks.push(chunk));
        stream.on('end', () => {
          zip.close();
          resolve(Buffer.concat(chunks).toString('utf8'));
        });
      });
    });
    zip.on('end', () => reject(new Error('no extension.vsixmanifest')));
    zip.readEntry();
  });
  assert.match(manifest, /TargetPlatform="linux-x64"/);
});

test("ships onnxruntime-node's linux-x64 native files and its JavaScript", () => {
  for (const file of [`${NATIVE}onnxruntime_binding.node`, `${NATIVE}libonnxruntime.so.1`, 'extension/node_modules/onnxruntime-node/dist/index.js', 'extension/node_modules/onnxruntime-common/dist/cjs/index.js']) {
    assert.ok(names().includes(file), `${file} missing`);
  }
});

test('ships no other platform and no GPU provider', () => {
  const foreign = names().filter(
    (name) =>
      (name.includes('/bin/napi-v') && !name.startsWith(NATIVE)) ||
      /\.(dll|dylib|exe)$/i.test(name) ||
      /libonnxruntime_providers_(cuda|tensorrt|rocm)/.test(name),
  );
  assert.deepEqual(foreign, []);
});

test('ships no sources, tests, demo, tools, source maps or build-only packages', () => {
  const allowedModules = ['extension/node_modules/onnxruntime-node/', 'extension/node_modules/onnxruntime-common/'];
  const unwanted = names().filter(
    (name) =>
      /\.(ts|mts|cts|map)$/.test(name) ||
      /^extension\/(client|server|common|webview|test|demo|tools|scripts|bench|\.cache|\.git)\//.test(name) ||
      /\.vsix$/.test(name) ||
      (name.startsWith('extension/node_modules/') && !allowedModules.some((prefix) => name.startsWith(prefix))),
  );
  assert.deepEqual(unwanted, []);
});

test('stays small', () => {
  const compressed = statSync(vsixPath).size;
  const uncompressed = entries.reduce((sum, entry) => sum + entry.size, 0);
  assert.ok(compressed < MAX_COMPRESSED_BYTES, `VSIX is ${(compressed / 1e6).toFixed(1)} MB compressed, bound ${MAX_COMPRESSED_BYTES / 1e6} MB`);
  assert.ok(uncompressed < MAX_UNCOMPRESSED_BYTES, `VSIX is ${(uncompressed / 1e6).toFixed(1)} MB uncompressed, bound ${MAX_UNCOMPRESSED_BYTES / 1e6} MB`);
});
