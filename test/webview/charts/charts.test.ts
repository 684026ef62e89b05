// Every profile chart rendered in headless Chromium from a profile built by the real Profiler
// (synthetic routing), in a dark and a light VS Code theme: each canvas must be painted, the usage
// heatmap must hold layers × experts cells, and the screenshots are kept for a person to judge.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, test } from 'node:test';
import * as esbuild from 'esbuild';
import type { Browser, Page } from 'playwright-core';
import { compareProfiles } from '../../../server/src/profile/compare';
import { Profiler } from '../../../server/src/profile/profiler';
import type { LayerRouting } from '../../../server/src/profile/statistics';
import { launchBrowser, prerequisite, repoRoot, screenshot } from '../../support/browser';
import { Prng } from '../../support/prng';
import type { ChartsFixture } from './page';

const LAYERS = 8;
const EXPERTS = 8;
const TOP_K = 2;
const TOKENS = 3000;

const THEMES: Record<'dark' | 'light', Record<string, string>> = {
  dark: {
    '--vscode-foreground': '#cccccc',
    '--vscode-editor-background': '#1e1e1e',
    '--vscode-widget-border': '#454545',
    '--vscode-charts-blue': '#3794ff',
    '--vscode-charts-orange': '#d18616',
    '--vscode-font-family': 'sans-serif',
  },
  light: {
    '--vscode-foreground': '#3b3b3b',
    '--vscode-editor-background': '#ffffff',
    '--vscode-widget-border': '#cecece',
    '--vscode-charts-blue': '#1a85ff',
    '--vscode-charts-orange': '#c27d1a',
    '--vscode-font-family': 'sans-serif',
  },
};

/** Top-2 routing of random logits with a per-layer preference for some experts (`seed` changes which). */
function syntheticProfile(seed: number) {
  const prng = new Prng(seed);
  const profiler = new Profiler({ tokenRecords: 16 });
  const bias = Array.from({ length: LAYERS }, (_, layer) => Array.from({ length: EXPERTS }, () => prng.normal() * (0.4 + layer * 0.2)));
  const routing: LayerRouting[] = bias.map((layerBias, layer) => {
    const logits = new Float32Array(TOKENS * EXPERTS);
    const experts = new Int32Array(TOKENS * TOP_K);
    const gates = new Float32Array(TOKENS * TOP_K);
    for (let t = 0; t < TOKENS; t++) {
      const row = Array.from({ length: EXPERTS }, (_, e) => layerBias[e] + prng.normal());
      logits.set(row, t * EXPERTS);
      const order = row.map((value, e) => [value, e]).sort((a, b) => b[0] - a[0]);
      const [first, second] = order;
      const weight = 1 / (1 + Math.exp(second[0] - first[0]));
      experts.set([first[1], second[1]], t * TOP_K);
      gates.set([weight, 1 - weight], t * TOP_K);
    }
    return { layer, numExperts: EXPERTS, topK: TOP_K, routerLogits: logits, selectedExperts: experts, gateWeights: gates, expertOutputNorms: prng.normalArray(TOKENS * TOP_K, 5, 1) };
  });
  const tokenIds = Array.from({ length: TOKENS }, (_, t) => t);
  profiler.addSequence({ row: 0, tokenIds, offsets: tokenIds.map((t) => [t, t + 1] as const) }, routing);
  return profiler.finalize();
}

const dir = mkdtempSync(join(tmpdir(), 'moe-charts-'));
let browser: Browser | undefined;
after(async () => {
  await browser?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function openPage(): Promise<{ page: Page; problems: string[] }> {
  await esbuild.build({
    entryPoints: [join(repoRoot, 'test/webview/charts/page.ts')],
    bundle: true, platform: 'browser', format: 'iife', target: 'es2022', outfile: join(dir, 'page.js'), logLevel: 'warning',
  });
  writeFileSync(join(dir, 'index.html'), `<!doctype html><html><head><meta charset="utf-8"><style>
    body { margin: 0; padding: 12px; background: var(--vscode-editor-background); color: var(--vscode-foreground); font-family: var(--vscode-font-family); }
    #grid { display: grid; grid-template-columns: repeat(3, 1fr); gap: 12px; }
    h2 { font-size: 13px; font-weight: 600; margin: 0 0 6px; }
    .box { position: relative; height: 300px; }
  </style></head><body><div id="grid"></div><script src="page.js"></script></body></html>`);
  const page = await browser!.newPage({ viewport: { width: 1500, height: 700 } });
  const problems: string[] = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => message.type() === 'error' && problems.push(`console error: ${message.text()}`));
  await page.goto(pathToFileURL(join(dir, 'index.html')).href);
  return { page, problems };
}

/** Per canvas: painted pixels and distinct colours (a blank or single-colour canvas fails). */
async function paint(page: Page): Promise<Record<string, { painted: number; colours: number; width: number; height: number }>> {
  return page.evaluate(() => {
    const result: Record<string, { painted: number; colours: number; width: number; height: number }> = {};
    for (const canvas of document.querySelectorAll('canvas')) {
      const { data } = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height);
      const colours = new Set<number>();
      let painted = 0;
      for (let i = 0; i < data.length; i += 4) {
        if (data[i + 3] === 0) continue;
        painted++;
        colours.add(((data[i] >> 3) << 10) | ((data[i + 1] >> 3) << 5) | (data[i + 2] >> 3));
      }
      result[canvas.id] = { painted, colours: colours.size, width: canvas.width, height: canvas.height };
    }
    return result;
  });
}

test('every profile chart renders in a dark and a light theme', async (t) => {
  browser = await prerequisite(t, 'Chromium', launchBrowser);
  if (!browser) return;
  const code = syntheticProfile(1);
  const prose = syntheticProfile(2);
  const fixture: ChartsFixture = { layers: code.layers, thresholds: code.gatingThresholds, comparison: compareProfiles(code, prose, 'code', 'prose') };
  const { page, problems } = await openPage();

  for (const [name, variables] of Object.entries(THEMES)) {
    await page.evaluate(({ variables, fixture }) => {
      for (const [variable, value] of Object.entries(variables)) document.documentElement.style.setProperty(variable, value);
      window.renderCharts(fixture);
    }, { variables, fixture });

    const pixels = await paint(page);
    assert.deepEqual(Object.keys(pixels).sort(), ['bars', 'coActivation', 'difference', 'entropy', 'gating', 'usage']);
    for (const [id, { painted, colours, width, height }] of Object.entries(pixels)) {
      assert.ok(width > 200 && height > 200, `${name}: ${id} is ${width}x${height}`);
      // Axes and labels alone paint a few percent; charts with data paint far more and in many colours.
      assert.ok(painted > 0.08 * width * height, `${name}: ${id} has only ${painted} of ${width * height} pixels painted`);
      assert.ok(colours >= 6, `${name}: ${id} has ${colours} colours`);
    }

    const counts = await page.evaluate(() => Object.fromEntries(Object.entries(window.charts).map(([id, chart]) => [id, chart.data.datasets.map((d) => d.data.length)])));
    assert.deepEqual(counts.usage, [LAYERS * EXPERTS], 'usage heatmap: one cell per layer × expert');
    assert.deepEqual(counts.difference, [LAYERS * EXPERTS]);
    assert.deepEqual(counts.coActivation, [EXPERTS * EXPERTS]);
    assert.deepEqual(counts.gating, Array(LAYERS).fill(code.gatingThresholds.length));
    assert.deepEqual(counts.entropy, [LAYERS]);

    // The entropy bars are entropy / ln E (the CLI's column), labelled so; co-activation's diagonal
    // (each expert with itself) is left out of the colour scale, whose bar names its unit.
    const read = await page.evaluate(() => {
      const entropy = window.charts.entropy;
      const co = window.charts.coActivation;
      const cells = co.data.datasets[0].data as unknown as { x: number; y: number; v: number }[];
      return {
        entropyTitle: (entropy.options.scales?.y as { title?: { text?: string } } | undefined)?.title?.text,
        entropy: entropy.data.datasets[0].data as number[],
        diagonal: cells.filter((c) => c.x === c.y).map((c) => c.v),
        offDiagonal: cells.filter((c) => c.x !== c.y).map((c) => c.v),
      };
    });
    assert.equal(read.entropyTitle, 'entropy / ln E');
    read.entropy.forEach((value, i) => assert.ok(Math.abs(value - code.layers[i].meanEntropy / Math.log(code.layers[i].numExperts)) < 1e-12, `layer ${i}: ${value}`));
    assert.ok(read.diagonal.length === EXPERTS && read.diagonal.every(Number.isNaN), 'the co-activation diagonal is coloured like data');
    assert.ok(read.offDiagonal.every(Number.isFinite));

    await screenshot(page, name === 'dark' ? 'charts' : 'charts-light');
  }
  assert.deepEqual(problems, []);
});
