import * as vscode from 'vscode';
import type { LanguageClient } from 'vscode-languageclient/node';
import { TokenRoutesRequest } from '../../common/protocol';

/**
 * Colours every profiled token of a dataset by its top expert in one chosen layer. The palette is
 * translucent so text stays readable in light and dark themes; the legend is the hover.
 */
const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#bcbd22', '#7f7f7f'];

export class RoutingDecorations implements vscode.Disposable {
  /** Decoration types per document URI, one per expert colour. */
  private readonly shown = new Map<string, vscode.TextEditorDecorationType[]>();

  constructor(private readonly client: () => LanguageClient | undefined) {}

  async toggle(editor: vscode.TextEditor | undefined): Promise<void> {
    if (!editor) {
      void vscode.window.showInformationMessage('Open a profiled dataset to colour its tokens by expert.');
      return;
    }
    const key = editor.document.uri.toString();
    const existing = this.shown.get(key);
    if (existing) {
      existing.forEach((type) => type.dispose());
      this.shown.delete(key);
      return;
    }
    const client = this.client();
    if (!client) return;
    const routes = await client.sendRequest(TokenRoutesRequest.type, { uri: key });
    if (routes.routes.length === 0) {
      void vscode.window.showInformationMessage('This dataset has no token-level routing yet: run "Profile experts on this dataset" first.');
      return;
    }
    const layerPick = await vscode.window.showQuickPick(
      routes.layers.map((layer, index) => ({ label: `Layer ${layer}`, index })),
      { title: 'Colour tokens by their top expert in which layer?' },
    );
    if (!layerPick) return;
    const types = Array.from({ length: routes.numExperts }, (_, expert) =>
      vscode.window.createTextEditorDecorationType({
        backgroundColor: `${PALETTE[expert % PALETTE.length]}40`,
        borderRadius: '2px',
        overviewRulerColor: PALETTE[expert % PALETTE.length],
        overviewRulerLane: vscode.OverviewRulerLane.Right,
      }));
    const rangesByExpert = types.map(() => [] as vscode.DecorationOptions[]);
    for (const route of routes.routes) {
      const expert = route.experts[layerPick.index]?.[0];
      if (expert === undefined || expert < 0) continue;
      const { start, end } = route.range;
      rangesByExpert[expert].push({
        range: new vscode.Range(start.line, start.character, end.line, end.character),
        hoverMessage: `Layer ${routes.layers[layerPick.index]}: expert ${expert} (gate ${route.gates[layerPick.index][0].toFixed(2)})`,
      });
    }
    types.forEach((type, expert) => editor.setDecorations(type, rangesByExpert[expert]));
    this.shown.set(key, types);
  }

  dispose(): void {
    for (const types of this.shown.values()) types.forEach((type) => type.dispose());
    this.shown.clear();
  }
}
