// A MoE Studio webview page in headless Chromium, from the same HTML the extension serves
// (client/src/webview/html.ts: same CSP and nonce rule) and the built bundle. A stub
// `acquireVsCodeApi` records what the page posts; the test plays the extension's side.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { newNonce, webviewHtml } from '../../client/src/webview/html';
import type { FromWebviewMessage, ToWebviewMessage } from '../../common/protocol';
import { newPage, repoRoot } from './browser';

/** A dark theme as VS Code sets it on the webview's <html>. */
export const DARK_THEME: Record<string, string> = {
  '--vscode-foreground': '#cccccc',
  '--vscode-editor-background': '#1e1e1e',
  '--vscode-descriptionForeground': '#9d9d9d',
  '--vscode-widget-border': '#454545',
  '--vscode-charts-blue': '#3794ff',
  '--vscode-charts-orange': '#d18616',
  '--vscode-charts-green': '#89d185',
  '--vscode-charts-purple': '#b180d7',
  '--vscode-charts-red': '#f14c4c',
  '--vscode-font-family': 'sans-serif',
  '--vscode-font-size': '13px',
  '--vscode-errorForeground': '#f48771',
};

declare global {
  interface Window {
    posted: FromWebviewMessage[];
    cspViolations: string[];
  }
}

/** Serves `/` as the panel's HTML for `script` and dist/webview/* as the extension would. */
export class WebviewPageServer {
  private server?: Server;
  origin = '';

  constructor(private readonly script: string, private readonly title: string) {}

  async start(): Promise<void> {
    this.server = createServer(async (request, response) => {
      const path = new URL(request.url ?? '/', this.origin).pathname;
      if (path === '/') {
        const page = webviewHtml({
          cspSource: this.origin,
          scriptUri: `${this.origin}/dist/webview/${this.script}.js`,
          styleUri: `${this.origin}/dist/webview/style.css`,
          nonce: newNonce(),
          title: this.title,
        });
        response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(page);
        return;
      }
      const served: Record<string, string> = { [`/dist/webview/${this.script}.js`]: 'text/javascript', '/dist/webview/style.css': 'text/css' };
      if (!served[path]) {
        response.writeHead(path === '/favicon.ico' ? 204 : 404).end();
        return;
      }
      response.writeHead(200, { 'content-type': served[path] }).end(await readFile(join(repoRoot, path)));
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.origin = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  stop(): Promise<void> {
    return new Promise((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  /** Opens the page with the VS Code API stubbed; `problems` collects page errors and CSP complaints. */
  async open(browser: Browser, theme: Record<string, string> = DARK_THEME, viewport = { width: 1000, height: 640 }): Promise<{ page: Page; problems: string[] }> {
    const page = await newPage(browser, { viewport });
    const problems: string[] = [];
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error' || /Content.Security.Policy|Refused to/i.test(message.text())) problems.push(`console ${message.type()}: ${message.text()}`);
    });
    // Injected by the DevTools protocol, which the page's CSP does not govern (VS Code injects its API the same way, from outside the page's scripts).
    await page.addInitScript((vars: Record<string, string>) => {
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
        for (const [name, value] of Object.entries(vars)) document.documentElement.style.setProperty(name, value);
      });
    }, theme);
    await page.goto(this.origin);
    await page.waitForFunction(() => window.posted.some((message) => message.type === 'ready'), undefined, { timeout: 15_000 });
    return { page, problems };
  }
}

export async function send(page: Page, message: ToWebviewMessage): Promise<void> {
  await page.evaluate((data) => window.postMessage(data, '*'), message);
}

export async function assertClean(page: Page, problems: string[]): Promise<void> {
  const violations = await page.evaluate(() => window.cspViolations);
  assert.deepEqual(violations, [], 'CSP violations');
  assert.deepEqual(problems, [], 'console errors');
}

/** Pixels of a canvas that are not transparent, and those close to `rgb`. */
export async function canvasPixels(page: Page, id: string, rgb?: number[]): Promise<{ width: number; height: number; painted: number; matching: number }> {
  return page.evaluate(({ id, rgb }) => {
    const canvas = document.getElementById(id) as HTMLCanvasElement;
    const { data } = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height);
    let painted = 0;
    let matching = 0;
    for (let i = 0; i < data.length; i += 4) {
      if (data[i + 3] === 0) continue;
      painted++;
      if (rgb && Math.abs(data[i] - rgb[0]) < 8 && Math.abs(data[i + 1] - rgb[1]) < 8 && Math.abs(data[i + 2] - rgb[2]) < 8) matching++;
    }
    return { width: canvas.width, height: canvas.height, painted, matching };
  }, { id, rgb });
}
