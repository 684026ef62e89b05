// Shared by the end-to-end tests: the packaged extension installed into a code-server of its own,
// opened on a fresh copy of demo/ in headless Chromium, plus the workbench waits and locators the
// tests use (explorer rows, the active webview, notifications, the MoE Studio status item).

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import type { TestContext } from 'node:test';
import type { Browser, FrameLocator, Locator, Page } from 'playwright-core';
import { ensureCodeServer, installExtension, launchCodeServer, type CodeServer, type ProfileDirs } from '../../scripts/codeServer.mjs';
import { launchBrowser, newPage, prerequisite, repoRoot } from '../support/browser';
import { freshVsix } from '../support/vsix';
import { workspaceWithDataset } from './workspace';

export const STATUS_ITEM = '.statusbar-item[id$=".moeStudio.status"]';
export const STARTUP_MS = 180_000;

export interface Session {
  page: Page;
  server: CodeServer;
  /** The workspace folder (a copy of demo/). */
  folder: string;
  /** The dataset workspaceWithDataset() names (data/code.valid.jsonl). */
  dataset: string;
  dirs: ProfileDirs;
  /** Browser page errors seen so far (the workbench logs some of its own: not failures). */
  pageErrors: string[];
  /** Closes the browser, stops code-server, removes the temporary folders. Safe to call twice. */
  close(): Promise<void>;
}

/**
 * Builds the VSIX if stale, installs it into a fresh code-server profile, launches code-server on a
 * copy of demo/ and opens a page. `undefined` when a prerequisite is missing outside CI (the test
 * is then skipped loudly). Register `session.close` with `after` (or call it) in every case.
 */
export async function startSession(t: TestContext, cleanup: { close?: () => Promise<void> }): Promise<Session | undefined> {
  const vsix = await freshVsix();
  if (!(await prerequisite(t, 'code-server', () => ensureCodeServer((line) => console.log(line))))) return undefined;
  const browser: Browser | undefined = await prerequisite(t, 'Chromium', launchBrowser);
  if (!browser) return undefined;

  let server: CodeServer | undefined;
  let profileDir: string | undefined;
  let workspaceDir: string | undefined;
  let closed: Promise<void> | undefined;
  const close = () =>
    (closed ??= (async () => {
      await browser.close().catch(() => undefined);
      await server?.stop();
      for (const dir of [profileDir, workspaceDir]) if (dir) await rm(dir, { recursive: true, force: true });
    })());
  cleanup.close = close;

  const { folder, dataset } = workspaceWithDataset();
  workspaceDir = dirname(folder);
  profileDir = await mkdtemp(join(tmpdir(), 'moe-studio-e2e-'));
  const dirs = { userDataDir: join(profileDir, 'user-data'), extensionsDir: join(profileDir, 'extensions') };
  t.diagnostic(`workspace ${relative(repoRoot, folder)}, profile ${profileDir}`);
  t.diagnostic(await installExtension(vsix, dirs));
  server = await launchCodeServer({ folder, ...dirs });
  t.diagnostic(`code-server at ${server.url}`);

  const page = await newPage(browser, { viewport: { width: 1400, height: 900 } });
  const pageErrors: string[] = [];
  page.on('pageerror', (error) => pageErrors.push(error.message));
  return { page, server, folder, dataset, dirs, pageErrors, close };
}

/**
 * Runs the test's steps; on failure adds what the workbench showed (notifications) and the server's
 * side of the story (code-server output, where extension host errors show up) to the error.
 */
export async function withFailureContext(session: Session, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (error) {
    const tail = session.server.output.slice(-40).join('\n');
    const notifications = await visibleNotifications(session.page);
    throw new Error(
      `${error instanceof Error ? error.message : String(error)}\n--- notifications ---\n${notifications.join('\n') || '(none)'}\n--- code-server output (last 40 lines) ---\n${tail}`,
      { cause: error },
    );
  }
}

/** Loads the workbench and waits for the explorer to list the workspace. */
export async function openWorkbench(page: Page, url: string): Promise<void> {
  await page.goto(url, { timeout: 60_000 });
  await page.locator('.monaco-workbench').waitFor({ timeout: 90_000 });
  await page.locator('.explorer-folders-view .monaco-list-row').first().waitFor({ timeout: 90_000 });
}

/** Waits for the MoE Studio status item to settle on ready (check icon); fails on error or timeout. */
export async function waitForServerReady(page: Page, timeout = STARTUP_MS): Promise<void> {
  const item = page.locator(STATUS_ITEM);
  await item.waitFor({ timeout }).catch(() => {
    throw new Error('the MoE Studio status bar item never appeared: did the extension activate?');
  });
  // Settles on ready (check) or error; anything else after the timeout is a failure too.
  await page
    .locator(`${STATUS_ITEM} .codicon-check, ${STATUS_ITEM} .codicon-error`)
    .first()
    .waitFor({ timeout })
    .catch(() => undefined);
  if ((await page.locator(`${STATUS_ITEM} .codicon-check`).count()) === 0) {
    throw new Error(`the MoE Studio server did not become ready; status item says "${await item.getAttribute('aria-label')}"`);
  }
  assert.match((await item.getAttribute('aria-label')) ?? '', /ready/i);
}

export function explorerRow(page: Page, name: string): Locator {
  return page.locator(`.explorer-folders-view .monaco-list-row[aria-label="${name}"]`).first();
}

/** An editor tab whose label starts with `label`. */
export function editorTab(page: Page, label: string): Locator {
  return page.locator(`.tabs-container .tab[aria-label^="${label}"]`).first();
}

/** VS Code puts a webview's page in an inner frame of its host iframe. */
export function activeWebview(page: Page): FrameLocator {
  return page.frameLocator('iframe.webview.ready').last().frameLocator('#active-frame');
}

export async function visibleNotifications(page: Page): Promise<string[]> {
  try {
    return await page.locator('.notification-toast .notification-list-item-message').allTextContents();
  } catch {
    return [];
  }
}

/** Runs a command from the command palette by its title ("MoE Studio: Generate pruning plan"). */
export async function runCommand(page: Page, title: string): Promise<void> {
  const input = page.locator('.quick-input-widget .quick-input-box input');
  await page.keyboard.press('F1');
  if (!(await input.waitFor({ timeout: 5_000 }).then(() => true, () => false))) {
    await page.keyboard.press('Control+Shift+P');
    await input.waitFor({ timeout: 10_000 });
  }
  await input.fill(`>${title}`);
  await page.locator('.quick-input-widget .monaco-list-row', { hasText: title }).first().waitFor({ timeout: 15_000 });
  await page.keyboard.press('Enter');
}

export function quickInputTitled(page: Page, title: string) {
  return page.locator(`.quick-input-widget .quick-input-title`, { hasText: title }).first();
}

/** Answers a single-choice quick pick by typing the label and pressing Enter. */
export async function pickOne(page: Page, title: string, label: string): Promise<void> {
  await quickInputTitled(page, title).waitFor({ timeout: 60_000 });
  const input = page.locator(`.quick-input-widget .quick-input-box input`);
  await input.fill(label);
  await page.locator(`.quick-input-widget .monaco-list-row.focused`, { hasText: label }).first().waitFor({ timeout: 10_000 });
  await page.keyboard.press('Enter');
  await quickInputTitled(page, title).waitFor({ state: 'hidden', timeout: 10_000 });
}
