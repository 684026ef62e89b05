/**
 * The HTML shell of every MoE Studio webview. It holds no data: data arrives by `postMessage`
 * after the page says `ready`, so nothing user-controlled is ever interpolated into markup.
 *
 * Kept free of the `vscode` module so the webview tests render exactly this page in Chromium.
 */
export interface WebviewHtmlOptions {
  /** `webview.cspSource`: the origin allowed for our own scripts, styles and fonts. */
  cspSource: string;
  scriptUri: string;
  styleUri: string;
  nonce: string;
  title: string;
}

export function webviewHtml({ cspSource, scriptUri, styleUri, nonce, title }: WebviewHtmlOptions): string {
  const csp = [
    "default-src 'none'",
    `img-src ${cspSource} data:`,
    `style-src ${cspSource}`,
    `font-src ${cspSource}`,
    `script-src 'nonce-${nonce}'`,
  ].join('; ');
  return `<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="UTF-8">
  <meta http-equiv="Content-Security-Policy" content="${csp}">
  <meta name="viewport" content="width=device-width, initial-scale=1.0">
  <link href="${styleUri}" rel="stylesheet">
  <title>${escapeHtml(title)}</title>
</head>
<body>
  <main id="app" aria-live="polite">
    <p class="loading">Loading…</p>
  </main>
  <script nonce="${nonce}" src="${scriptUri}"></script>
</body>
</html>`;
}

export function newNonce(): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  let nonce = '';
  for (let i = 0; i < 32; i++) nonce += alphabet[Math.floor(Math.random() * alphabet.length)];
  return nonce;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}
