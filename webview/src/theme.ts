/**
 * Chart colours from the VS Code theme, so charts read well in light, dark and high-contrast themes.
 * VS Code sets `--vscode-*` variables on the webview's <html>; they change when the theme does.
 */
export interface ChartTheme {
  foreground: string;
  grid: string;
  accent: string;
  font: string;
}

export function chartTheme(): ChartTheme {
  const style = getComputedStyle(document.documentElement);
  const css = (name: string, fallback: string) => style.getPropertyValue(name).trim() || fallback;
  return {
    foreground: css('--vscode-foreground', '#cccccc'),
    grid: css('--vscode-widget-border', css('--vscode-editorWidget-border', 'rgba(128,128,128,0.35)')),
    accent: css('--vscode-charts-blue', css('--vscode-textLink-foreground', '#3794ff')),
    font: css('--vscode-font-family', 'sans-serif'),
  };
}

/** Calls `redraw` when VS Code switches themes (it rewrites the body's class list). */
export function onThemeChange(redraw: () => void): void {
  new MutationObserver(redraw).observe(document.body, { attributes: true, attributeFilter: ['class'] });
}
