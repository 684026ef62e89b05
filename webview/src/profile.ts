/**
 * The profile dashboard. For now it charts the dataset summary the server sends (rows by size);
 * expert statistics join it when profiling lands.
 */
import { BarController, BarElement, CategoryScale, Chart, LinearScale, Tooltip } from 'chart.js';
import type { DatasetSummary } from '../../common/protocol';
import { chartTheme, onThemeChange } from './theme';
import { onMessage, vscode } from './vscodeApi';

Chart.register(BarController, BarElement, CategoryScale, LinearScale, Tooltip);

const app = document.getElementById('app') as HTMLElement;
let chart: Chart | undefined;
let shown: DatasetSummary | undefined;

onMessage((message) => {
  switch (message.type) {
    case 'datasetSummary':
      shown = message.payload;
      vscode.setState({ summary: shown });
      renderSummary(shown);
      return;
    case 'error':
      renderError(message.payload.message);
      return;
  }
});

onThemeChange(() => shown && renderSummary(shown));

const saved = vscode.getState() as { summary?: DatasetSummary } | undefined;
if (saved?.summary) {
  shown = saved.summary;
  renderSummary(shown);
}
vscode.postMessage({ type: 'ready', payload: {} });

function renderSummary(summary: DatasetSummary): void {
  chart?.destroy();
  app.replaceChildren(
    element('h1', { id: 'summary-title' }, summary.fileName),
    element('p', { className: 'facts' },
      `${summary.format.toUpperCase()} · ${summary.rows.toLocaleString()} rows · ${formatBytes(summary.bytes)}` +
        (summary.malformedRows > 0 ? ` · ${summary.malformedRows} malformed (first at line ${summary.firstMalformedLines.join(', ')})` : '')),
    element('section', { className: 'chart-card' },
      element('header', {},
        element('h2', {}, 'Rows by size'),
        button('Save as PNG', () => saveChart('summary-chart', `${summary.fileName}.rows-by-size.png`))),
      element('div', { className: 'chart-box' }, element('canvas', { id: 'summary-chart', role: 'img', ariaLabel: 'Histogram of row sizes in bytes' }))),
  );
  const theme = chartTheme();
  const { edges, counts } = summary.rowBytesHistogram;
  chart = new Chart(document.getElementById('summary-chart') as HTMLCanvasElement, {
    type: 'bar',
    data: {
      labels: counts.map((_, i) => `${formatBytes(edges[i])}–${formatBytes(edges[i + 1])}`),
      datasets: [{ label: 'rows', data: counts, backgroundColor: theme.accent }],
    },
    options: {
      animation: false,
      maintainAspectRatio: false,
      color: theme.foreground,
      font: { family: theme.font },
      scales: {
        x: { ticks: { color: theme.foreground }, grid: { color: theme.grid }, title: { display: true, text: 'row size', color: theme.foreground } },
        y: { ticks: { color: theme.foreground }, grid: { color: theme.grid }, title: { display: true, text: 'rows', color: theme.foreground }, beginAtZero: true },
      },
      plugins: { tooltip: { enabled: true } },
    },
  });
}

function renderError(message: string): void {
  chart?.destroy();
  app.replaceChildren(element('div', { className: 'error', role: 'alert' }, message));
}

function saveChart(canvasId: string, fileName: string): void {
  const canvas = document.getElementById(canvasId) as HTMLCanvasElement | null;
  if (canvas) vscode.postMessage({ type: 'saveChart', payload: { dataUrl: canvas.toDataURL('image/png'), fileName } });
}

function button(label: string, onClick: () => void): HTMLButtonElement {
  const node = element('button', { type: 'button' }, label);
  node.addEventListener('click', onClick);
  return node;
}

/** Builds DOM with text nodes only: payload strings never become markup. */
function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Partial<HTMLElementTagNameMap[K]>,
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 ** 2) return `${(bytes / 1024).toFixed(1)} KB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 ** 2).toFixed(1)} MB`;
  return `${(bytes / 1024 ** 3).toFixed(2)} GB`;
}
