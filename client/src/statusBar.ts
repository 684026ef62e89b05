import * as vscode from 'vscode';
import type { HealthParams } from '../../common/protocol';

const ICONS: Record<HealthParams['state'], string> = {
  starting: '$(sync~spin)',
  ready: '$(check)',
  busy: '$(loading~spin)',
  error: '$(error)',
};

/** The server's health at a glance; clicking it shows the server log. */
export class StatusBar implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem('moeStudio.status', vscode.StatusBarAlignment.Left, 10);

  constructor() {
    this.item.name = 'MoE Studio status';
    this.item.command = 'moeStudio.showServerLog';
    this.show({ state: 'starting', message: 'Starting the language server' });
    this.item.show();
  }

  show(health: HealthParams): void {
    this.item.text = `${ICONS[health.state]} MoE Studio`;
    const tooltip = new vscode.MarkdownString(`**MoE Studio: ${health.state}**\n\n${health.message}`);
    if (health.detail) tooltip.appendCodeblock(health.detail, 'text');
    tooltip.appendMarkdown('\n\nClick to show the server log.');
    this.item.tooltip = tooltip;
    this.item.accessibilityInformation = { label: `MoE Studio: ${health.state}. ${health.message}` };
    this.item.backgroundColor = health.state === 'error' ? new vscode.ThemeColor('statusBarItem.errorBackground') : undefined;
  }

  dispose(): void {
    this.item.dispose();
  }
}
