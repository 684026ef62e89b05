// The packaged extension in real VS Code (code-server in headless Chromium), driven the way a
// person uses it: wait for the server to be ready, open a dataset from the explorer,
// right-click it, "Profile experts on this dataset", see the dataset chart and the expert
// heatmap, then hover a token in the dataset and see its experts, colour the tokens by their top
// expert (with a legend, and a note where the token records stop), and find the dataset just profiled
// first among the plan wizard's calibration data. Screenshots of every step land in
// test-results/e2e-*.png.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { basename, relative } from 'node:path';
import { after, test } from 'node:test';
import type { FrameLocator, Page } from 'playwright-core';
import { screenshot, step } from '../support/browser';
import { activeWebview, explorerRow, openWorkbench, pickOne, quickInputTitled, runCommand, startSession, waitForServerReady, withFailureContext } from './harness';

const cleanup: { close?: () => Promise<void> } = {};

after(async () => {
  await cleanup.close?.();
});

test('profiling a dataset from the explorer opens the chart', { timeout: 600_000 }, async (t) => {
  const session = await startSession(t, cleanup);
  if (!session) return;
  const { page, server, folder, dataset } = session;
  const datasetName = basename(dataset);
  t.diagnostic(`dataset ${datasetName}`);
  await withFailureContext(session, () => run(page, server.url, folder, datasetName, dataset));
  t.diagnostic(`page errors (not failures; the workbench logs some of its own): ${session.pageErrors.length}`);
});

async function run(page: Page, url: string, folder: string, datasetName: string, dataset: string): Promise<void> {
  await step(page, 'e2e-1-workbench', () => openWorkbench(page, url));

  await step(page, 'e2e-2-server-ready', () => waitForServerReady(page));

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

  // Token routing colours: a legend (expert → colour) on the first line; when the profile kept token
  // records for the first rows only, a note where the colours stop, saying why.
  await step(page, 'e2e-9-routing-colours', async () => {
    await page.keyboard.press('Escape');
    await runCommand(page, 'MoE Studio: Toggle token routing colours');
    await pickOne(page, 'in which layer', 'Layer 0');
    let texts: string[] = [];
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline && !texts.some((text) => text.includes('top expert'))) {
      texts = await decorationTexts(page);
      await page.waitForTimeout(250);
    }
    const legend = texts.filter((text) => /top expert|■/.test(text));
    assert.ok(legend.some((text) => text.includes('layer 0, top expert:')), `no legend among the editor's decorations: ${JSON.stringify(texts.slice(0, 20))}`);
    for (let expert = 0; expert < 8; expert++) assert.ok(legend.some((text) => text.includes(`■ ${expert}`)), `expert ${expert} missing from the legend: ${JSON.stringify(legend)}`);
    const lines = (await readFile(dataset, 'utf8')).split('\n').length;
    const note = texts.find((text) => text.includes('token colours and routing hovers cover'));
    if (note) assert.match(note, new RegExp(`lines 1–\\d+ of ${lines}\\b.*moeStudio\\.profile\\.tokenRecords`));
  });
  await runCommand(page, 'MoE Studio: Toggle token routing colours');

  // The plan wizard offers the dataset just profiled first among the calibration data.
  await step(page, 'e2e-10-wizard-calibration-first', async () => {
    await runCommand(page, 'MoE Studio: Generate pruning plan');
    await pickOne(page, 'Pruning method', 'Frequency');
    await pickOne(page, 'How many experts', 'Keep 4 of 8 experts per layer');
    await pickOne(page, 'Repair after pruning', 'No repair');
    await quickInputTitled(page, 'Calibration data').waitFor({ timeout: 60_000 });
    const first = page.locator('.quick-input-widget .monaco-list-row').first();
    await first.waitFor({ timeout: 10_000 });
    const text = (await first.textContent()) ?? '';
    assert.ok(text.includes(datasetName) && text.includes('just profiled'), `the first calibration choice is "${text}", not ${datasetName} (just profiled)`);
  });
  await page.keyboard.press('Escape');
}

/** Text the editor shows that is not in the document: decorations' before/after content (pseudo-elements). */
async function decorationTexts(page: Page): Promise<string[]> {
  return page.evaluate(() => {
    const out: string[] = [];
    for (const element of Array.from(document.querySelectorAll('.monaco-editor .view-lines span'))) {
      for (const pseudo of ['::before', '::after']) {
        const content = getComputedStyle(element, pseudo).content;
        if (content && content !== 'none' && content !== 'normal') out.push(content.replace(/^"|"$/g, ''));
      }
    }
    return out;
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
