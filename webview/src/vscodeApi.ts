import type { FromWebviewMessage, ToWebviewMessage } from '../../common/protocol';

interface VsCodeApi {
  postMessage(message: FromWebviewMessage): void;
  getState(): unknown;
  setState(state: unknown): void;
}

declare function acquireVsCodeApi(): VsCodeApi;

/** The webview's one handle on the extension; `acquireVsCodeApi` may only be called once per page. */
export const vscode: VsCodeApi = acquireVsCodeApi();

export function onMessage(handler: (message: ToWebviewMessage) => void): void {
  window.addEventListener('message', (event: MessageEvent<ToWebviewMessage>) => handler(event.data));
}
