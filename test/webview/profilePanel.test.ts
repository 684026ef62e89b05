// The profile panel's page, rendered in headless Chromium from the same HTML the extension
// serves (client/src/webview/html.ts, same CSP and nonce rule) and the built webview bundle.
// A stub `acquireVsCodeApi` records what the page posts; the test plays the extension's side.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { newNonce, webviewHtml } from '../../client/src/webview/html';
import type { DatasetSummary, FromWebviewMessage, ToWebviewMessage } from '../../common/protocol';
import { launchBrowser, newPage, prerequisite, repoRoot, screenshot } from '../support/browser';
import { freshVsix } from '../support/vsix';

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

/** A dark theme as VS Code sets it on the webview's <html>; the bars use --vscode-charts-blue. */
const THEME: Record<string, string> = {
  '--vscode-foreground': '#cccccc',
  '--vscode-editor-background': '#1e1e1e',
  '--vscode-descriptionForeground': '#9d9d9d',
  '--vscode-widget-border': '#454545',
  '--vscode-charts-blue': '#3794ff',
  '--vscode-font-family': 'sans-serif',
  '--vscode-font-size': '13px',
  '--vscode-errorForeground': '#f48771',
};
const BAR_RGB = [0x37, 0x94, 0xff];

declare global {
  interface Window {
    posted: FromWebviewMessage[];
    cspViolations: string[];
  }
}

let server: Server | undefined;
let origin = '';
let browser: Browser | undefined;

before(async () => {
  // The bundle under test is dist/webview/profile.js: bring the build up to date first.
  await freshVsix();
  server = createServer(async (request, response) => {
    const path = new URL(request.url ?? '/', origin).pathname;
    if (path === '/') {
      const page = webviewHtml({
        cspSource: origin,
        scriptUri: `${origin}/dist/webview/profile.js`,
        styleUri: `${origin}/dist/webview/style.css`,
        nonce: newNonce(),
        title: `Profile: ${SUMMARY.fileName}`,
      });
      response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(page);
      return;
    }
    const served: Record<string, string> = { '/dist/webview/profile.js': 'text/javascript', '/dist/webview/style.css': 'text/css' };
    if (!served[path]) {
      response.writeHead(path === '/favicon.ico' ? 204 : 404).end();
      return;
    }
    response.writeHead(200, { 'content-type': served[path] }).end(await readFile(join(repoRoot, path)));
  });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  await browser?.close();
  await new Promise((resolve) => server?.close(resolve));
});

/** Opens the panel page with the VS Code API stubbed; fails the test on any page error or CSP violation. */
async function openPanel(): Promise<{ page: Page; problems: string[] }> {
  const page = await newPage(browser!, { viewport: { width: 1000, height: 640 } });
  const problems: string[] = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error' || /Content.Security.Policy|Refused to/i.test(message.text())) problems.push(`console ${message.type()}: ${message.text()}`);
  });
  // Injected by the DevTools protocol, which the page's CSP does not govern (VS Code injects its API the same way, from outside the page's scripts).
  await page.addInitScript((theme: Record<string, string>) => {
    window.posted = [];
    window.cspViolations = [];
    let state: unknown;
    Object.assign(window, {
      acquireVsCodeApi: () => ({
        postMessage: (message: FromWebviewMessage) => window.posted.push(message),
        getState: () => state,
        setState: (next: unknown) => (state = next),
      }),
    });
    document.addEventListener('securitypolicyviolation', (event) => window.cspViolations.push(`${event.violatedDirective}: ${event.blockedURI}`));
    document.addEventListener('DOMContentLoaded', () => {
      for (const [name, value] of Object.entries(theme)) document.documentElement.style.setProperty(name, value);
    });
  }, THEME);
  await page.goto(origin);
  await page.waitForFunction(() => window.posted.some((message) => message.type === 'ready'), undefined, { timeout: 15_000 });
  return { page, problems };
}

async function send(page: Page, message: ToWebviewMessage): Promise<void> {
  await page.evaluate((data) => window.postMessage(data, '*'), message);
}

async function assertClean(page: Page, problems: string[]): Promise<void> {
  const violations = await page.evaluate(() => window.cspViolations);
  assert.deepEqual(violations, [], 'CSP violations');
  assert.deepEqual(problems, [], 'console errors');
}

test('the profile panel charts a dataset summary under its CSP', async (t) => {
  browser = await prerequisite(t, 'Chromium', launchBrowser);
  if (!browser) return;
  const { page, problems } = await openPanel();

  await send(page, { type: 'datasetSummary', payload: SUMMARY, requestId: 1 });
  await page.locator('#summary-title').waitFor({ timeout: 10_000 });
  assert.equal(await page.locator('#summary-title').textContent(), SUMMARY.fileName);
  assert.match((await page.locator('.facts').textContent()) ?? '', /240 rows/);
  await screenshot(page, 'webview-profile-summary');

  const pixels = await page.evaluate((bar) => {
    const canvas = document.getElementById('summary-chart') as HTMLCanvasElement;
    const { data } = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height);
    let painted = 0;
    let barPixels = 0;
    for (let i = 0; i < data.length; i += 4) {
      if (data[i + 3] === 0) continue;
      painted++;
      if (Math.abs(data[i] - bar[0]) < 8 && Math.abs(data[i + 1] - bar[1]) < 8 && Math.abs(data[i + 2] - bar[2]) < 8) barPixels++;
    }
    return { width: canvas.width, height: canvas.height, painted, barPixels };
  }, BAR_RGB);
  assert.ok(pixels.width > 100 && pixels.height > 100, `chart canvas is ${pixels.width}x${pixels.height}`);
  // Five bars of a 320px-high chart cover thousands of pixels; axes and labels alone do not reach the bar colour.
  assert.ok(pixels.barPixels > 2_000, `only ${pixels.barPixels} pixels in the bar colour (${pixels.painted} painted)`);

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
