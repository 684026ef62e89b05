// The packaged extension in real VS Code (code-server in headless Chromium), driven the way a
// person uses it: wait for the server to be ready, open a dataset from the explorer,
// right-click it, "Profile experts on this dataset", see the dataset chart and the expert
// heatmap, then hover a token in the dataset and see its experts. Screenshots of every step
// land in test-results/e2e-*.png.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative } from 'node:path';
import { after, test } from 'node:test';
import type { Browser, FrameLocator, Page } from 'playwright-core';
import { ensureCodeServer, installExtension, launchCodeServer, type CodeServer } from '../../scripts/codeServer.mjs';
import { launchBrowser, newPage, prerequisite, repoRoot, screenshot, step } from '../support/browser';
import { freshVsix } from '../support/vsix';
import { workspaceWithDataset } from './workspace';

const STATUS_ITEM = '.statusbar-item[id$=".moeStudio.status"]';
const STARTUP_MS = 180_000;

let server: CodeServer | undefined;
let browser: Browser | undefined;
let profileDir: string | undefined;
let workspaceDir: string | undefined;

after(async () => {
  await browser?.close();
  await server?.stop();
  for (const dir of [profileDir, workspaceDir]) if (dir) await rm(dir, { recursive: true, force: true });
});

test('profiling a dataset from the explorer opens the chart', { timeout: 600_000 }, async (t) => {
  const vsix = await freshVsix();
  if (!(await prerequisite(t, 'code-server', () => ensureCodeServer((line) => console.log(line))))) return;
  browser = await prerequisite(t, 'Chromium', launchBrowser);
  if (!browser) return;

  const { folder, dataset } = workspaceWithDataset();
  workspaceDir = dirname(folder);
  const datasetName = basename(dataset);
  profileDir = await mkdtemp(join(tmpdir(), 'moe-studio-e2e-'));
  const dirs = { userDataDir: join(profileDir, 'user-data'), extensionsDir: join(profileDir, 'extensions') };
  t.diagnostic(`workspace ${relative(repoRoot, folder)}, dataset ${datasetName}, profile ${profileDir}`);
  t.diagnostic(await installExtension(vsix, dirs));
  server = await launchCodeServer({ folder, ...dirs });
  t.diagnostic(`code-server at ${server.url}`);

  const page = await newPage(browser, { viewport: { width: 1400, height: 900 } });
  const pageErrors: string[] = [];
  page.on('pageerror', (error) => pageErrors.push(error.message));
  try {
    await run(page, server.url, folder, datasetName, dataset);
  } catch (error) {
    // The server's side of the story: extension host errors show up in its output.
    const tail = server.output.slice(-40).join('\n');
    const notifications = await visibleNotifications(page);
    throw new Error(
      `${error instanceof Error ? error.message : String(error)}\n--- notifications ---\n${notifications.join('\n') || '(none)'}\n--- code-server output (last 40 lines) ---\n${tail}`,
      { cause: error },
    );
  }
  t.diagnostic(`page errors (not failures; the workbench logs some of its own): ${pageErrors.length}`);
});

async function run(page: Page, url: string, folder: string, datasetName: string, dataset: string): Promise<void> {
  await step(page, 'e2e-1-workbench', async () => {
    await page.goto(url, { timeout: 60_000 });
    await page.locator('.monaco-workbench').waitFor({ timeout: 90_000 });
    await page.locator('.explorer-folders-view .monaco-list-row').first().waitFor({ timeout: 90_000 });
  });

  await step(page, 'e2e-2-server-ready', async () => {
    const item = page.locator(STATUS_ITEM);
    await item.waitFor({ timeout: STARTUP_MS }).catch(() => {
      throw new Error('the MoE Studio status bar item never appeared: did the extension activate?');
    });
    // Settles on ready (check) or error; anything else after the timeout is a failure too.
    await page
      .locator(`${STATUS_ITEM} .codicon-check, ${STATUS_ITEM} .codicon-error`)
      .first()
      .waitFor({ timeout: STARTUP_MS })
      .catch(() => undefined);
    if ((await page.locator(`${STATUS_ITEM} .codicon-check`).count()) === 0) {
      throw new Error(`the MoE Studio server did not become ready; status item says "${await item.getAttribute('aria-label')}"`);
    }
    assert.match((await item.getAttribute('aria-label')) ?? '', /ready/i);
  });

  const row = await step(page, 'e2e-3-dataset-open', async () => {
    // Expand every folder between the workspace root and the dataset, then open the file.
    const parents = relative(folder, dataset).split(/[\\/]/).slice(0, -1);
    for (const name of parents) {
      const folderRow = explorerRow(page, name);
      await folderRow.waitFor({ timeout: 30_000 });
      if ((await folderRow.getAttribute('aria-expanded')) !== 'true') await folderRow.click();
    }
    const fileRow = explorerRow(page, datasetName);
    await fileRow.waitFor({ timeout: 30_000 });
    await fileRow.click();
    await page.locator(`.tabs-container .tab[aria-label^="${datasetName}"]`).first().waitFor({ timeout: 30_000 });
    return fileRow;
  });

  await step(page, 'e2e-4-context-menu', async () => {
    await row.click({ button: 'right' });
    await page.getByRole('menuitem', { name: 'Profile experts on this dataset' }).waitFor({ timeout: 15_000 });
  });

  const webview = await step(page, 'e2e-5-profile-panel', async () => {
    await page.getByRole('menuitem', { name: 'Profile experts on this dataset' }).click();
    await page.locator(`.tabs-container .tab[aria-label^="Profile: ${datasetName}"]`).first().waitFor({ timeout: 60_000 });
    const frame = activeWebview(page);
    await frame.locator('#summary-title').waitFor({ timeout: 120_000 });
    return frame;
  });

  assert.equal((await webview.locator('#summary-title').textContent())?.trim(), datasetName);
  const chart = await webview.locator('#summary-chart').evaluate((canvas: HTMLCanvasElement) => {
    const { data } = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height);
    let painted = 0;
    for (let i = 3; i < data.length; i += 4) if (data[i] > 0) painted++;
    return { width: canvas.width, height: canvas.height, painted };
  });
  assert.ok(chart.width > 100 && chart.height > 100, `chart canvas is ${chart.width}x${chart.height}`);
  assert.ok(chart.painted > 2_000, `the chart canvas is nearly blank (${chart.painted} painted pixels)`);
  await screenshot(page, 'e2e-6-chart');

  await step(page, 'e2e-7-expert-heatmap', async () => {
    await webview.locator('#usage-heatmap').waitFor({ timeout: 240_000 }).catch(async () => {
      const error = await webview.locator('.error').allTextContents();
      throw new Error(`the expert heatmap never appeared${error.length ? `: ${error.join(' ')}` : ''}`);
    });
    const heatmap = await paintedPixels(webview, '#usage-heatmap');
    assert.ok(heatmap > 2_000, `the expert heatmap is nearly blank (${heatmap} painted pixels)`);
    assert.match((await webview.locator('#profile-facts').textContent()) ?? '', /MixtralForCausalLM · 4 MoE layers × 8 experts/);
  });

  await step(page, 'e2e-8-token-hover', async () => {
    await page.locator(`.tabs-container .tab[aria-label^="${datasetName}"]`).first().click();
    // The first row's first characters are inside its "text" string: hover a token there.
    const firstLine = page.locator('.monaco-editor .view-lines .view-line').first();
    await firstLine.waitFor({ timeout: 15_000 });
    const box = (await firstLine.boundingBox())!;
    const hover = page.locator('.monaco-hover:not(.hidden)').filter({ hasText: /expert/i }).first();
    for (const x of [160, 200, 240, 120]) {
      await page.mouse.move(box.x + x, box.y + box.height / 2);
      if (await hover.waitFor({ timeout: 6_000 }).then(() => true, () => false)) break;
    }
    await hover.waitFor({ timeout: 10_000 });
    assert.match((await hover.textContent()) ?? '', /layer\s*experts/i);
    // One table row per MoE layer of the demo model, under the header.
    assert.equal(await hover.locator('table tbody tr').count(), 4);
  });
}

async function paintedPixels(frame: FrameLocator, selector: string): Promise<number> {
  return frame.locator(selector).evaluate((canvas: HTMLCanvasElement) => {
    const { data } = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height);
    let painted = 0;
    for (let i = 3; i < data.length; i += 4) if (data[i] > 0) painted++;
    return painted;
  });
}

function explorerRow(page: Page, name: string) {
  return page.locator(`.explorer-folders-view .monaco-list-row[aria-label="${name}"]`).first();
}

/** VS Code puts a webview's page in an inner frame of its host iframe. */
function activeWebview(page: Page): FrameLocator {
  return page.frameLocator('iframe.webview.ready').last().frameLocator('#active-frame');
}

async function visibleNotifications(page: Page): Promise<string[]> {
  try {
    return await page.locator('.notification-toast .notification-list-item-message').allTextContents();
  } catch {
    return [];
  }
}
