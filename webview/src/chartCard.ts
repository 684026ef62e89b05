import { button, element } from './dom';
import { vscode } from './vscodeApi';

/**
 * A titled card around one chart canvas, with "Save as PNG". `controls` go in the header
 * (e.g. a layer picker); `note` is a line under the chart saying how to read it.
 */
export function chartCard(id: string, title: string, fileName: string, options: { tall?: boolean; controls?: Node[]; label?: string; note?: string } = {}): { card: HTMLElement; canvas: HTMLCanvasElement } {
  const canvas = element('canvas', { id, role: 'img', ariaLabel: options.label ?? title });
  const card = element('section', { className: 'chart-card' },
    element('header', {},
      element('h2', {}, title),
      element('div', { className: 'controls' }, ...(options.controls ?? []), button('Save as PNG', () => saveCanvas(canvas, fileName)))),
    element('div', { className: options.tall ? 'chart-box tall' : 'chart-box' }, canvas),
    ...(options.note ? [element('p', { className: 'chart-note' }, options.note)] : []));
  return { card, canvas };
}

function saveCanvas(canvas: HTMLCanvasElement, fileName: string): void {
  vscode.postMessage({ type: 'saveChart', payload: { dataUrl: canvas.toDataURL('image/png'), fileName } });
}
