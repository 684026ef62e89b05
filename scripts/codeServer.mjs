// Real VS Code for `npm start` and the end-to-end tests: code-server, installed on demand
// into a cache outside the repository. It is not a devDependency because its postinstall
// builds lib/vscode's native modules, which needs install scripts, build tools and a
// seeded ripgrep download that a plain `npm ci` must not depend on.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync, statSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export const CODE_SERVER_VERSION = '4.100.3';
/** The ripgrep build that code-server's @vscode/ripgrep downloads from GitHub in its postinstall. */
const RIPGREP_CACHE = { folder: 'vscode-ripgrep-cache-1.15.11', archive: 'ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz' };

/** Debian packages the code-server install (native builds, ripgrep, kerberos headers) and the browser tests (chromium) need. */
export const SYSTEM_PACKAGES = {
  chromium: { file: '/usr/bin/chromium', apt: 'chromium' },
  ripgrep: { file: '/usr/bin/rg', apt: 'ripgrep' },
  krb5: { file: '/usr/include/krb5.h', apt: 'libkrb5-dev' },
  compiler: { file: '/usr/bin/g++', apt: 'build-essential' },
  python: { file: '/usr/bin/python3', apt: 'python3' },
};

export function cacheRoot() {
  if (process.env.MOE_STUDIO_CACHE) return process.env.MOE_STUDIO_CACHE;
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'moe-studio');
}

export function codeServerDir() {
  return join(cacheRoot(), `code-server-${CODE_SERVER_VERSION}`);
}

function codeServerEntry() {
  return join(codeServerDir(), 'node_modules', 'code-server', 'out', 'node', 'entry.js');
}

function installedMarker() {
  return join(codeServerDir(), '.installed');
}

export function isCodeServerInstalled() {
  return existsSync(installedMarker()) && existsSync(codeServerEntry());
}

/**
 * Makes sure the named system packages are present. As root on Debian, missing ones are
 * installed with apt-get; anywhere else the error says what to install.
 * @param {Array<keyof typeof SYSTEM_PACKAGES>} names
 */
export async function ensureSystemPackages(names, log = console.log) {
  const missing = names.map((name) => SYSTEM_PACKAGES[name]).filter((pkg) => !existsSync(pkg.file));
  if (missing.length === 0) return;
  const aptNames = missing.map((pkg) => pkg.apt);
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!isRoot || !existsSync('/usr/bin/apt-get')) {
    throw new Error(`Missing system packages: ${aptNames.join(' ')}. Install them, e.g. \`sudo apt-get install -y ${aptNames.join(' ')}\`.`);
  }
  await withLock(join(cacheRoot(), 'apt.lock'), async () => {
    const stillMissing = missing.filter((pkg) => !existsSync(pkg.file)).map((pkg) => pkg.apt);
    if (stillMissing.length === 0) return;
    log(`[moe-studio] installing system packages: ${stillMissing.join(' ')}`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    let result = run('apt-get', ['install', '-y', '--no-install-recommends', ...stillMissing], { env });
    if (result.status !== 0) {
      run('apt-get', ['update'], { env });
      result = run('apt-get', ['install', '-y', '--no-install-recommends', ...stillMissing], { env });
    }
    if (result.status !== 0) throw new Error(`apt-get install ${stillMissing.join(' ')} failed (exit ${result.status}).`);
  });
}

/**
 * Installs code-server into the cache if it is not there yet and returns the folder.
 * Idempotent and safe against concurrent callers (a lock folder serialises installs).
 */
export async function ensureCodeServer(log = console.log) {
  if (isCodeServerInstalled()) return codeServerDir();
  await ensureSystemPackages(['ripgrep', 'krb5', 'compiler', 'python'], log);
  await withLock(`${codeServerDir()}.lock`, async () => {
    if (isCodeServerInstalled()) return;
    const dir = codeServerDir();
    log(`[moe-studio] installing code-server ${CODE_SERVER_VERSION} into ${dir} (one time, a few minutes)`);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'moe-studio-code-server', private: true }, null, 2));
    seedRipgrepCache();
    const env = {
      ...process.env,
      npm_config_unsafe_perm: 'true',
      npm_config_yes: 'true',
      // code-server's postinstall runs `npm install` for lib/vscode, whose native modules
      // (node-pty, kerberos, @parcel/watcher...) must run their install scripts too; the
      // environment carries the permission into those nested npm runs.
      npm_config_dangerously_allow_all_scripts: 'true',
      npm_config_ignore_scripts: 'false',
      npm_config_audit: 'false',
      npm_config_fund: 'false',
      npm_config_update_notifier: 'false',
    };
    const result = run('npm', ['install', '--no-save', '--foreground-scripts', `code-server@${CODE_SERVER_VERSION}`], { cwd: dir, env });
    if (result.status !== 0 || !existsSync(codeServerEntry())) {
      throw new Error(`Installing code-server ${CODE_SERVER_VERSION} into ${dir} failed (npm exit ${result.status}); see the npm output above.`);
    }
    // An empty config file of our own keeps code-server from writing a password into ~/.config.
    const config = join(dir, 'code-server.yaml');
    writeFileSync(config, '');
    const version = spawnSync(process.execPath, [codeServerEntry(), '--config', config, '--version'], { encoding: 'utf8' });
    if (version.status !== 0) {
      throw new Error(`code-server was installed into ${dir} but does not start:\n${version.stderr || version.stdout}`);
    }
    writeFileSync(installedMarker(), version.stdout);
    log(`[moe-studio] code-server ready: ${version.stdout.trim()}`);
  });
  return codeServerDir();
}

/** @vscode/ripgrep downloads its binary from GitHub; Debian's rg in the expected archive avoids the network. */
function seedRipgrepCache() {
  const folder = join(tmpdir(), RIPGREP_CACHE.folder);
  const archive = join(folder, RIPGREP_CACHE.archive);
  if (existsSync(archive) && statSync(archive).size > 0) return;
  const staging = join(folder, 'staging');
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  const rg = spawnSync('cp', [SYSTEM_PACKAGES.ripgrep.file, join(staging, 'rg')]);
  if (rg.status !== 0) throw new Error(`Could not copy ${SYSTEM_PACKAGES.ripgrep.file} into the ripgrep cache.`);
  const tar = spawnSync('tar', ['-czf', archive, '-C', staging, 'rg']);
  rmSync(staging, { recursive: true, force: true });
  if (tar.status !== 0) throw new Error(`Could not write ${archive}: ${tar.stderr}`);
}

/**
 * Installs a .vsix into the given profile.
 * @param {string} vsix
 * @param {{userDataDir: string, extensionsDir: string}} dirs
 */
export async function installExtension(vsix, { userDataDir, extensionsDir }) {
  await ensureCodeServer();
  await mkdir(userDataDir, { recursive: true });
  await mkdir(extensionsDir, { recursive: true });
  await writeFile(join(userDataDir, 'code-server.yaml'), '');
  const result = spawnSync(
    process.execPath,
    [codeServerEntry(), ...profileArgs({ userDataDir, extensionsDir }), '--install-extension', vsix, '--force'],
    { encoding: 'utf8', timeout: 180_000 },
  );
  const output = `${result.stdout ?? ''}${result.stderr ?? ''}`;
  if (result.status !== 0 || !/successfully installed/i.test(output)) {
    throw new Error(`code-server --install-extension ${vsix} failed (exit ${result.status}):\n${output}`);
  }
  return output.trim();
}

/** A profile of our own; the empty config file keeps code-server from writing a password into ~/.config. */
function profileArgs({ userDataDir, extensionsDir }) {
  return ['--user-data-dir', userDataDir, '--extensions-dir', extensionsDir, '--config', join(userDataDir, 'code-server.yaml')];
}

/**
 * Starts code-server on 127.0.0.1 without authentication and resolves once it listens.
 * @param {{folder: string, port?: number, userDataDir: string, extensionsDir: string, log?: (line: string) => void, timeoutMs?: number}} options
 */
export async function launchCodeServer({ folder, port, userDataDir, extensionsDir, log, timeoutMs = 120_000 }) {
  await ensureCodeServer();
  await mkdir(userDataDir, { recursive: true });
  await mkdir(extensionsDir, { recursive: true });
  await writeFile(join(userDataDir, 'code-server.yaml'), '');
  await writeDefaultSettings(userDataDir);
  const listenPort = port ?? (await findFreePort());
  const args = [
    codeServerEntry(),
    ...profileArgs({ userDataDir, extensionsDir }),
    '--auth', 'none',
    '--bind-addr', `127.0.0.1:${listenPort}`,
    '--disable-telemetry',
    '--disable-update-check',
    '--disable-workspace-trust',
    '--disable-getting-started-override',
    '--ignore-last-opened',
    folder,
  ];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: process.platform !== 'win32' });
  const output = [];
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`code-server did not report "HTTP server listening" within ${timeoutMs / 1000}s`)), timeoutMs);
    const onData = (chunk) => {
      for (const line of chunk.toString().split('\n')) {
        if (!line.trim()) continue;
        output.push(line);
        log?.(line);
        if (line.includes('HTTP server listening')) {
          clearTimeout(timer);
          resolve(`http://127.0.0.1:${listenPort}/`);
        }
      }
    };
    const fail = (error) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`${error.message}\ncode-server output:\n${output.join('\n')}`));
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('error', fail);
    child.once('exit', (code, signal) => fail(new Error(`code-server exited early (code ${code}, signal ${signal})`)));
  });
  child.removeAllListeners('exit');
  child.removeAllListeners('error');
  let stopped;
  const stop = () => {
    stopped ??= new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve(undefined);
      child.once('exit', () => resolve(undefined));
      // code-server forks an extension host per window: end the whole process group it leads.
      killGroup(child, 'SIGTERM');
      setTimeout(() => killGroup(child, 'SIGKILL'), 5_000).unref();
    });
    return stopped;
  };
  return { url, port: listenPort, process: child, output, stop };
}

/** First-run settings: open straight onto the workspace, with nothing phoning home. Kept if the user changed them. */
async function writeDefaultSettings(userDataDir) {
  const settings = join(userDataDir, 'User', 'settings.json');
  if (existsSync(settings)) return;
  await mkdir(join(userDataDir, 'User'), { recursive: true });
  await writeFile(
    settings,
    JSON.stringify(
      {
        'workbench.startupEditor': 'none',
        'workbench.tips.enabled': false,
        'workbench.enableExperiments': false,
        'telemetry.telemetryLevel': 'off',
        'extensions.autoCheckUpdates': false,
        'extensions.autoUpdate': false,
        'extensions.ignoreRecommendations': true,
        'update.mode': 'none',
        'chat.commandCenter.enabled': false,
        'git.openRepositoryInParentFolders': 'never',
      },
      null,
      2,
    ),
  );
}

function killGroup(child, signal) {
  try {
    if (process.platform !== 'win32' && child.pid) process.kill(-child.pid, signal);
    else child.kill(signal);
  } catch {
    // already gone
  }
}

/** The preferred port when it is free, otherwise one the OS picks. */
export async function findFreePort(preferred = 0) {
  const tryListen = (port) =>
    new Promise((resolve) => {
      const server = createServer();
      server.once('error', () => resolve(undefined));
      server.listen(port, '127.0.0.1', () => {
        const address = server.address();
        server.close(() => resolve(typeof address === 'object' && address ? address.port : undefined));
      });
    });
  if (preferred) {
    const port = await tryListen(preferred);
    if (port) return port;
  }
  const port = await tryListen(0);
  if (!port) throw new Error('No free TCP port on 127.0.0.1');
  return port;
}

function run(command, args, options) {
  return spawnSync(command, args, { stdio: 'inherit', ...options });
}

/** A folder used as a mutex across processes; a lock whose owner died is taken over. */
export async function withLock(lockDir, body) {
  mkdirSync(join(lockDir, '..'), { recursive: true });
  const ownerFile = join(lockDir, 'pid');
  for (;;) {
    try {
      mkdirSync(lockDir);
      writeFileSync(ownerFile, String(process.pid));
      break;
    } catch (error) {
      if (error.code !== 'EEXIST') throw error;
      const owner = Number(safeRead(ownerFile));
      if (owner && !isAlive(owner)) rmSync(lockDir, { recursive: true, force: true });
      else await sleep(1_000);
    }
  }
  try {
    return await body();
  } finally {
    await rm(lockDir, { recursive: true, force: true });
  }
}

function safeRead(file) {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

function isAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return error.code === 'EPERM';
  }
}
