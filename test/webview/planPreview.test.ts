// The plan preview page in headless Chromium (test/support/webviewPage.ts): kept, merged and
// dropped experts per layer, savings, quality against the full model, and the sweep chart.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Browser } from 'playwright-core';
import type { PreviewPlanResult, SweepResult } from '../../common/protocol';
import { launchBrowser, prerequisite, screenshot } from '../support/browser';
import { freshVsix } from '../support/vsix';
import { assertClean, canvasPixels, send, WebviewPageServer } from '../support/webviewPage';

const PREVIEW: PreviewPlanResult = {
  plan: {
    schema: 'moe-studio.plan',
    version: 1,
    model: { folder: '../model', architecture: 'MixtralForCausalLM', numExperts: 8, numLayers: 2, topK: 2 },
    calibration: { datasets: ['../data/code.train.jsonl'] },
    method: { name: 'uncurl', parameters: { targetExperts: 4 }, seed: 0 },
    uniformExpertCount: true,
    exactInHuggingFace: { exact: true, reasons: [] },
    layers: [
      { layer: 0, keptExperts: [0, 2, 5, 7] },
      { layer: 1, keptExperts: [1, 3, 4, 6], mergeMatrix: [], routerMap: [] },
    ],
    predictedSavings: {
      dtype: 'F32',
      parameters: { before: 4_658_304, after: 2_692_224 },
      bytes: { before: 18_633_216, after: 10_768_896 },
      activeParametersPerToken: { before: 1_709_184, after: 1_709_184 },
    },
    evaluations: [{ dataset: 'code.valid.jsonl', metric: 'loss', value: 5.4012, baseline: 5.1665 }],
  },
  layers: [
    { layer: 0, numExperts: 8, kept: [0, 2, 5, 7], mergedInto: {}, dropped: [1, 3, 4, 6] },
    { layer: 1, numExperts: 8, kept: [1, 3, 4, 6], mergedInto: { 1: [0], 4: [2, 5], 6: [7] }, dropped: [] },
  ],
  configBefore: '{"num_local_experts": 8}',
  configAfter: '{"num_local_experts": 4}',
  notExactReasons: [],
  modelFolder: '/workspace/model',
  calibrationFiles: ['/workspace/data/code.train.jsonl'],
};

const SWEEP: SweepResult = {
  metric: 'loss',
  counts: [8, 7, 6, 5, 4, 3, 2, 1],
  baseline: 5.17,
  series: [
    { method: 'random', values: [5.17, 5.6, 6.1, 6.6, 7.2, 7.9, 8.6, 9.4] },
    { method: 'frequency', values: [5.17, 5.2, 5.3, 5.45, 5.7, 6.2, 7.0, 8.1] },
    { method: 'uncurl', values: [5.17, 5.19, 5.25, 5.35, 5.5, 5.9, 6.6, 7.6] },
  ],
};

const pageServer = new WebviewPageServer('planPreview', 'Plan: code.uncurl-keep4');
let browser: Browser | undefined;

before(async () => {
  await freshVsix();
  await pageServer.start();
});

after(async () => {
  await browser?.close();
  await pageServer.stop();
});

test('the plan preview shows each layer, the savings, quality, and a sweep chart on request', async (t) => {
  browser = await prerequisite(t, 'Chromium', launchBrowser);
  if (!browser) return;
  const { page, problems } = await pageServer.open(browser, undefined, { width: 1100, height: 900 });
  await send(page, { type: 'planPreview', payload: PREVIEW });
  await page.locator('#plan-title').waitFor({ timeout: 10_000 });

  // Layer 0 keeps 4 and drops 4; layer 1 keeps 4 and merges the other 4 into them.
  const rows = page.locator('#layers-grid .layer-row');
  assert.equal(await rows.count(), 2);
  assert.equal(await rows.nth(0).locator('.cell.kept').count(), 4);
  assert.equal(await rows.nth(0).locator('.cell.dropped').count(), 4);
  assert.equal(await rows.nth(1).locator('.cell.merged').count(), 4);
  assert.equal(await rows.nth(1).locator('.cell.merged[title="expert 5: merged into 4"]').count(), 1);
  assert.match((await page.locator('#savings').textContent()) ?? '', /4\.66 M.*2\.69 M.*−42\.2%/s);
  assert.match((await page.locator('#evaluations').textContent()) ?? '', /code\.valid\.jsonl.*loss.*5\.1665.*5\.4012.*\+0\.2347/s);

  // The sweep runs on the extension's side: the button asks, the result is charted.
  await page.getByRole('button', { name: /Run sweep/ }).click();
  assert.ok(await page.evaluate(() => window.posted.some((message) => message.type === 'runSweep')), 'Run sweep posted nothing');
  await send(page, { type: 'sweep', payload: SWEEP });
  await page.locator('#sweep-chart').waitFor({ timeout: 10_000 });
  const chart = await canvasPixels(page, 'sweep-chart', [0x37, 0x94, 0xff]);
  assert.ok(chart.width > 200 && chart.height > 200, `sweep canvas is ${chart.width}x${chart.height}`);
  assert.ok(chart.matching > 200, `the first method's line is missing (${chart.matching} pixels in its colour, ${chart.painted} painted)`);

  for (const [button, type] of [['Evaluate', 'evaluatePlan'], ['config.json diff', 'openConfigDiff'], ['Export…', 'exportPlan']] as const) {
    await page.getByRole('button', { name: button }).click();
    assert.ok(await page.evaluate((expected) => window.posted.some((message) => message.type === expected), type), `${button} posted no ${type}`);
  }
  await screenshot(page, 'webview-plan-preview');
  await assertClean(page, problems);
});

test('an EEP plan charts its search: the plan and the best candidate per generation, prune then merge', async (t) => {
  browser ??= await prerequisite(t, 'Chromium', launchBrowser);
  if (!browser) return;
  const { page, problems } = await pageServer.open(browser, undefined, { width: 1100, height: 900 });
  // The UNCURL preview has no search record: no chart.
  await send(page, { type: 'planPreview', payload: PREVIEW });
  await page.locator('#plan-title').waitFor({ timeout: 10_000 });
  assert.equal(await page.locator('#eep-search-chart').count(), 0);

  const search = {
    prune: { plan: [-4.7711, -4.7711, -4.7690, -4.7667], candidate: [-4.7700, -4.7690, -4.7680, -4.7667] },
    merge: { plan: [-4.7667, -4.7640, -4.7617], candidate: [-4.7667, -4.7630, -4.7617] },
  };
  const eep = { ...PREVIEW, plan: { ...PREVIEW.plan, method: { name: 'eep' as const, parameters: { targetExperts: 4, bestFitness: -4.7617, search }, seed: 0 } } };
  await send(page, { type: 'planPreview', payload: eep });
  await page.locator('#eep-search-chart').waitFor({ timeout: 10_000 });
  assert.match((await page.locator('#plan-title').textContent()) ?? '', /^eep plan/);
  const chart = await canvasPixels(page, 'eep-search-chart', [0x37, 0x94, 0xff]);
  assert.ok(chart.matching > 100, `the prune phase's line is missing (${chart.matching} pixels in its colour, ${chart.painted} painted)`);
  await screenshot(page, 'webview-plan-preview-eep');

  // A hand-edited record that is not two equal-length lists of numbers is left out, not drawn wrong.
  const broken = { ...eep, plan: { ...eep.plan, method: { ...eep.plan.method, parameters: { search: { prune: { plan: [1, 2], candidate: [1] } } } } } };
  await send(page, { type: 'planPreview', payload: broken });
  await page.locator('#plan-title').waitFor({ timeout: 10_000 });
  assert.equal(await page.locator('#eep-search-chart').count(), 0);
  await assertClean(page, problems);
});

test('the preview follows the plan: a new preview replaces the old, metrics read by name, a large drop stands out, the sweep button recovers', async (t) => {
  browser ??= await prerequisite(t, 'Chromium', launchBrowser);
  if (!browser) return;
  const { page, problems } = await pageServer.open(browser, undefined, { width: 1100, height: 900 });
  const unevaluated = { ...PREVIEW, plan: { ...PREVIEW.plan, evaluations: [] } };
  await send(page, { type: 'planPreview', payload: unevaluated });
  await page.getByText(/Not evaluated yet/).waitFor({ timeout: 10_000 });
  await screenshot(page, 'preview-refresh-before');

  // What the extension posts after Evaluate wrote its results into the plan: the panel shows them at once.
  const evaluated = {
    ...PREVIEW,
    plan: {
      ...PREVIEW.plan,
      evaluations: [
        { dataset: 'arithmetic-mc.jsonl', metric: 'accuracy' as const, value: 0.31, baseline: 0.89 },
        { dataset: 'code.valid.jsonl', metric: 'top1Agreement' as const, value: 0.97, baseline: 1 },
      ],
    },
  };
  await send(page, { type: 'planPreview', payload: evaluated });
  await page.locator('#evaluations').waitFor({ timeout: 10_000 });
  assert.equal(await page.getByText(/Not evaluated yet/).count(), 0);
  const table = (await page.locator('#evaluations').textContent()) ?? '';
  assert.match(table, /top-1 agreement with the full model/);
  assert.doesNotMatch(table, /top1Agreement/);
  assert.equal(await page.locator('#evaluations tr.quality-drop').count(), 1);
  assert.match((await page.locator('#evaluations tr.quality-drop').textContent()) ?? '', /accuracy.*0\.8900.*0\.3100/);
  await screenshot(page, 'preview-refresh-after');

  // An edit that removes an expert: the savings row is the new plan's, not the old one's.
  const edited = { ...evaluated, plan: { ...evaluated.plan, predictedSavings: { ...PREVIEW.plan.predictedSavings!, parameters: { before: 4_658_304, after: 2_200_704 } } } };
  await send(page, { type: 'planPreview', payload: edited });
  await page.waitForFunction(() => /2\.20 M/.test(document.querySelector('#savings')?.textContent ?? ''), undefined, { timeout: 10_000 });
  assert.match((await page.locator('#savings').textContent()) ?? '', /−52\.8%/);

  // The sweep failed, or no dataset was picked: the button is ready again, never stuck on "Sweeping…".
  const sweepButton = () => page.locator('button', { hasText: /Sweeping|Run sweep|again/ }).first();
  await sweepButton().click();
  assert.match((await sweepButton().textContent()) ?? '', /Sweeping/);
  await send(page, { type: 'error', payload: { message: 'The sweep failed: ENOENT model/config.json' } });
  await page.locator('button', { hasText: /^Run sweep/ }).waitFor({ timeout: 10_000 });
  assert.match((await page.locator('.error').textContent()) ?? '', /The sweep failed/);
  await sweepButton().click();
  await send(page, { type: 'sweepCancelled', payload: {} });
  await page.locator('button', { hasText: /^Run sweep/ }).waitFor({ timeout: 10_000 });
  await assertClean(page, problems);
});
