import type { ToWebviewMessage } from '../../common/protocol';
import { onThemeChange } from './theme';
import { onMessage, vscode } from './vscodeApi';

/** What a page draws: its DOM, and the charts to create once that DOM is in the document (chart.js measures its canvas). */
export interface Rendered {
  nodes: Node[];
  charts: (() => { destroy(): void })[];
}

export type Update<S> = (change: Partial<S>) => void;

/**
 * The life of a panel page: its state survives reloads (VS Code's getState/setState), every change
 * and every theme switch redraws it, charts are destroyed before a redraw, and `ready` is posted
 * once the page listens, so the extension knows when to send data.
 */
export function startPage<S extends object>(
  render: (state: S, update: Update<S>) => Rendered,
  receive: (message: ToWebviewMessage, update: Update<S>) => void,
): void {
  const app = document.getElementById('app') as HTMLElement;
  let state = (vscode.getState() as S | undefined) ?? ({} as S);
  let charts: { destroy(): void }[] = [];
  const redraw = () => {
    for (const chart of charts) chart.destroy();
    const rendered = render(state, update);
    app.replaceChildren(...rendered.nodes);
    charts = rendered.charts.map((draw) => draw());
  };
  const update: Update<S> = (change) => {
    state = { ...state, ...change };
    vscode.setState(state);
    redraw();
  };
  onMessage((message) => receive(message, update));
  onThemeChange(redraw);
  redraw();
  vscode.postMessage({ type: 'ready', payload: {} });
}
