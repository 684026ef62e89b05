// `npm ci` on a fresh machine: onnxruntime-node's install script must not fetch its CUDA provider
// from NuGet (nothing but the npm registry at install time), and no npm command may warn about
// the project's configuration. The skip lives in package.json's allowScripts (npm 11.19 honours
// it) and, for an npm that runs every install script, in ONNXRUNTIME_NODE_INSTALL=skip, which
// .ci/run exports and onnxruntime-node's script reads.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

const root = join(import.meta.dirname, '..', '..', '..');
const packageJson = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { allowScripts?: Record<string, boolean> };

test('package.json denies onnxruntime-node its install script and reviews every other one', () => {
  const allow = packageJson.allowScripts ?? {};
  assert.equal(allow['onnxruntime-node'], false);
  const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')) as { packages: Record<string, { hasInstallScript?: boolean; optional?: boolean }> };
  const withScripts = Object.entries(lock.packages)
    .filter(([path, entry]) => path !== '' && entry.hasInstallScript && !entry.optional)
    .map(([path]) => path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length));
  assert.ok(withScripts.includes('onnxruntime-node'), `the lock file lists no install script for onnxruntime-node: ${withScripts.join(', ')}`);
  for (const name of withScripts) assert.equal(typeof allow[name], 'boolean', `${name} has an install script allowScripts does not decide`);
});

test("onnxruntime-node's install script exits at once, without the network, under ONNXRUNTIME_NODE_INSTALL=skip", () => {
  const script = join(root, 'node_modules', 'onnxruntime-node', 'script', 'install.js');
  assert.ok(existsSync(script), `${script} missing`);
  // A proxy that refuses everything: a script that tried to download would fail instead of hanging.
  const env: NodeJS.ProcessEnv = { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip', GLOBAL_AGENT_HTTPS_PROXY: 'http://127.0.0.1:9', https_proxy: 'http://127.0.0.1:9' };
  delete env.npm_config_onnxruntime_node_install;
  const skipped = spawnSync(process.execPath, [script], { cwd: join(root, 'node_modules', 'onnxruntime-node'), env, encoding: 'utf8', timeout: 30_000 });
  assert.equal(skipped.status, 0, `exit ${skipped.status}: ${skipped.stderr}`);
  assert.equal(skipped.stdout + skipped.stderr, '', 'the skipped script printed something (did it try to install?)');
});

test('.ci/run exports ONNXRUNTIME_NODE_INSTALL=skip before npm ci', () => {
  const ci = readFileSync(join(root, '.ci', 'run'), 'utf8');
  const exported = ci.search(/^export ONNXRUNTIME_NODE_INSTALL=skip$/m);
  assert.ok(exported >= 0, '.ci/run does not export ONNXRUNTIME_NODE_INSTALL=skip');
  assert.ok(exported < ci.search(/^npm ci$/m), 'the variable is set after npm ci');
});

test('npm reads the project configuration without a warning', (t) => {
  const npm = spawnSync('npm', ['config', 'get', 'registry'], { cwd: root, encoding: 'utf8', timeout: 60_000 });
  if (npm.error) return t.skip(`npm not runnable here: ${npm.error.message}`);
  assert.equal(npm.status, 0, npm.stderr);
  assert.doesNotMatch(npm.stderr, /warn/i, `npm warned:\n${npm.stderr}`);
});
