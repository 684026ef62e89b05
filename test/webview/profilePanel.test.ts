// The profile panel's page in headless Chromium (test/support/webviewPage.ts): the same HTML
// and CSP the extension serves, the built bundle, and a stubbed VS Code API.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Browser } from 'playwright-core';
import type { DatasetSummary } from '../../common/protocol';
import { launchBrowser, prerequisite, screenshot } from '../support/browser';
import { freshVsix } from '../support/vsix';
import { assertClean, canvasPixels, send, WebviewPageServer } from '../support/webviewPage';

const SUMMARY: DatasetSummary = {
  uri: 'file:///workspace/data/prompts.jsonl',
  fileName: 'prompts.jsonl',
  format: 'jsonl',
  bytes: 48_213,
  rows: 240,
  malformedRows: 0,
  firstMalformedLines: [],
  rowBytesHistogram: { edges: [0, 64, 128, 256, 512, 1024], counts: [12, 70, 95, 48, 15] },
};

const BAR_RGB = [0x37, 0x94, 0xff];
const pageServer = new WebviewPageServer('profile', `Profile: ${SUMMARY.fileName}`);
let browser: Browser | undefined;

before(async () => {
  // The bundle under test is dist/webview/profile.js: bring the build up to date first.
  await freshVsix();
  await pageServer.start();
});

after(async () => {
  await browser?.close();
  await pageServer.stop();
});

const openPanel = () => pageServer.open(browser!);

test('the profile panel charts a dataset summary under its CSP', async (t) => {
  browser = await prerequisite(t, 'Chromium', launchBrowser);
  if (!browser) return;
  const { page, problems } = await openPanel();

  await send(page, { type: 'datasetSummary', payload: SUMMARY, requestId: 1 });
  await page.locator('#summary-title').waitFor({ timeout: 10_000 });
  assert.equal(await page.locator('#summary-title').textContent(), SUMMARY.fileName);
  assert.match((await page.locator('.facts').textContent()) ?? '', /240 rows/);
  await screenshot(page, 'webview-profile-summary');

  const pixels = await canvasPixels(page, 'summary-chart', BAR_RGB);
  assert.ok(pixels.width > 100 && pixels.height > 100, `chart canvas is ${pixels.width}x${pixels.height}`);
  // Five bars of a 320px-high chart cover thousands of pixels; axes and labels alone do not reach the bar colour.
  assert.ok(pixels.matching > 2_000, `only ${pixels.matching} pixels in the bar colour (${pixels.painted} painted)`);

  await page.getByRole('button', { name: 'Save as PNG' }).click();
  const saved = await page.evaluate(() => window.posted.find((message) => message.type === 'saveChart'));
  assert.ok(saved?.type === 'saveChart', 'Save as PNG posted no saveChart message');
  assert.match(saved.payload.dataUrl, /^data:image\/png;base64,/);
  assert.equal(saved.payload.fileName, 'prompts.jsonl.rows-by-size.png');

  await assertClean(page, problems);
});

test('the profile panel shows an error above the dataset summary', async (t) => {
  browser ??= await prerequisite(t, 'Chromium', launchBrowser);
  if (!browser) return;
  const { page, problems } = await openPanel();
  await send(page, { type: 'datasetSummary', payload: SUMMARY });
  await page.locator('#summary-chart').waitFor();
  await send(page, { type: 'error', payload: { message: 'prompts.jsonl: line 3 is not JSON' } });
  await page.getByRole('alert').waitFor({ timeout: 10_000 });
  assert.equal(await page.getByRole('alert').textContent(), 'prompts.jsonl: line 3 is not JSON');
  // A failed profile does not hide what is known about the data: the summary stays, below the error.
  const order = await page.evaluate(() => {
    const alert = document.querySelector('[role="alert"]')!;
    const title = document.getElementById('summary-title')!;
    return alert.compareDocumentPosition(title) & Node.DOCUMENT_POSITION_FOLLOWING;
  });
  assert.ok(order, 'the error is not above the summary');
  assert.equal(await page.locator('#summary-chart').count(), 1);
  assert.equal(await page.locator('.loading').count(), 0, 'a failed profile must not say it is still profiling');
  await screenshot(page, 'webview-profile-error');
  await assertClean(page, problems);
});
