import * as vscode from 'vscode';
import type { LanguageClient } from 'vscode-languageclient/node';
import { TokenRoutesRequest } from '../../common/protocol';

/**
 * Colours every profiled token of a dataset by its top expert in one chosen layer. The palette is
 * translucent so text stays readable in light and dark themes. A legend (expert → colour) sits at the
 * end of the first line, and when the profile kept token records for only the first rows (the
 * `moeStudio.profile.tokenRecords` setting), a note at the last coloured row says where colours and
 * routing hovers stop, so uncoloured rows below are not taken for unrouted ones.
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
    let lastLine = 0;
    for (const route of routes.routes) {
      lastLine = Math.max(lastLine, route.range.end.line);
      const expert = route.experts[layerPick.index]?.[0];
      if (expert === undefined || expert < 0) continue;
      const { start, end } = route.range;
      rangesByExpert[expert].push({
        range: new vscode.Range(start.line, start.character, end.line, end.character),
        hoverMessage: `Layer ${routes.layers[layerPick.index]}: expert ${expert} (gate ${route.gates[layerPick.index][0].toFixed(2)})`,
      });
    }
    types.forEach((type, expert) => editor.setDecorations(type, rangesByExpert[expert]));
    const notes = this.notes(editor, routes.numExperts, routes.layers[layerPick.index], lastLine);
    this.shown.set(key, [...types, ...notes]);
  }

  /** The legend on the first line and, when colours stop before the end of the file, a note where they stop. */
  private notes(editor: vscode.TextEditor, numExperts: number, layer: number, lastLine: number): vscode.TextEditorDecorationType[] {
    const endOf = (line: number) => editor.document.lineAt(line).range.end;
    const text = (contentText: string, color: vscode.ThemeColor | string, at: vscode.Position, margin = '0 0 0 1.5em') => {
      const type = vscode.window.createTextEditorDecorationType({ after: { contentText, color, margin, fontStyle: 'italic' } });
      editor.setDecorations(type, [{ range: new vscode.Range(at, at) }]);
      return type;
    };
    const legendAt = endOf(0);
    const legend = [
      text(`layer ${layer}, top expert:`, new vscode.ThemeColor('editorCodeLens.foreground'), legendAt),
      ...Array.from({ length: numExperts }, (_, expert) => text(`■ ${expert}`, PALETTE[expert % PALETTE.length], legendAt, '0 0 0 0.6em')),
    ];
    const lastRow = lastLine + 1;
    if (lastRow >= editor.document.lineCount) return legend;
    const stop = text(
      `↑ token colours and routing hovers cover lines 1–${lastRow} of ${editor.document.lineCount}: the profile keeps token records for the first rows only (setting moeStudio.profile.tokenRecords)`,
      new vscode.ThemeColor('editorWarning.foreground'),
      endOf(lastLine),
    );
    return [...legend, stop];
  }

  dispose(): void {
    for (const types of this.shown.values()) types.forEach((type) => type.dispose());
    this.shown.clear();
  }
}
