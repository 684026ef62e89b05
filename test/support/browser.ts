// Shared by the browser-driven tests (webview, end-to-end): one way to launch chromium,
// one place for screenshots, and one rule for missing prerequisites: skip loudly on a
// developer machine, fail under CI.

import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { TestContext } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { ensureSystemPackages, SYSTEM_PACKAGES } from '../../scripts/codeServer.mjs';

export const repoRoot = resolve(import.meta.dirname, '..', '..');
export const resultsDir = join(repoRoot, 'test-results');

export const isCI = /^(1|true)$/i.test(process.env.CI ?? '');

const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

/**
 * Runs a setup step the test cannot do without (installing chromium, code-server, building).
 * When it fails outside CI the test is skipped with a banner nobody can miss and `undefined`
 * is returned; under CI the failure propagates.
 */
export async function prerequisite<T>(t: TestContext, what: string, setup: () => Promise<T>): Promise<T | undefined> {
  try {
    return await setup();
  } catch (error) {
    if (isCI) throw error;
    const reason = `${what} unavailable: ${error instanceof Error ? error.message : String(error)}`;
    const rule = '!'.repeat(78);
    console.warn(`\n${rule}\n!! SKIPPED ${t.fullName}\n!! ${reason.split('\n').join('\n!! ')}\n!! (under CI=true this is a failure)\n${rule}\n`);
    t.skip(reason);
    return undefined;
  }
}

/** Headless chromium from the system (Debian's `chromium` package), driven by playwright-core. */
export async function launchBrowser(): Promise<Browser> {
  await ensureSystemPackages(['chromium'], (line) => console.log(line));
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? SYSTEM_PACKAGES.chromium.file,
    headless: true,
    args: CHROMIUM_ARGS,
  });
}

/**
 * A page whose frames understand functions compiled by tsx: esbuild's keepNames wraps inner
 * functions in `__name(fn, "name")`, which the browser side of `page.evaluate` does not define.
 */
export async function newPage(browser: Browser, options?: Parameters<Browser['newPage']>[0]): Promise<Page> {
  const page = await browser.newPage(options);
  await page.addInitScript('globalThis.__name = (fn) => fn;');
  return page;
}

/** Saves `test-results/<name>.png` and returns its path; never throws (a screenshot is evidence, not a check). */
export async function screenshot(page: Page, name: string): Promise<string | undefined> {
  mkdirSync(resultsDir, { recursive: true });
  const path = join(resultsDir, `${name}.png`);
  try {
    await page.screenshot({ path, timeout: 15_000 });
    return path;
  } catch (error) {
    console.warn(`could not save screenshot ${path}: ${error instanceof Error ? error.message : String(error)}`);
    return undefined;
  }
}

/** Runs one step of a browser test; on failure, saves a screenshot and says which step failed. */
export async function step<T>(page: Page, name: string, body: () => Promise<T>): Promise<T> {
  try {
    const result = await body();
    await screenshot(page, name);
    return result;
  } catch (error) {
    const shot = await screenshot(page, `${name}-FAILED`);
    const message = error instanceof Error ? error.message : String(error);
    throw new Error(`step "${name}" failed: ${message}${shot ? `\nscreenshot: ${shot}` : ''}`, { cause: error });
  }
}
