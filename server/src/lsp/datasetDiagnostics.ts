import { DiagnosticSeverity, type Diagnostic } from 'vscode-languageserver/node';
import type { TextDocument } from 'vscode-languageserver-textdocument';

/** Enough to point at the problem; a file with thousands of bad lines is one problem, not thousands. */
const MAX_DIAGNOSTICS = 100;

/**
 * Diagnostics for a JSON Lines document: every non-empty line must be one JSON value. Profiling
 * skips or stops on such lines (a setting), so showing them in the editor saves a failed run.
 */
export function jsonlDiagnostics(document: TextDocument): Diagnostic[] {
  const diagnostics: Diagnostic[] = [];
  const lines = document.getText().split(/\r?\n/);
  for (let line = 0; line < lines.length && diagnostics.length < MAX_DIAGNOSTICS; line++) {
    const text = lines[line];
    if (text.trim() === '') continue;
    try {
      JSON.parse(text);
    } catch (error) {
      diagnostics.push({
        range: { start: { line, character: 0 }, end: { line, character: text.length } },
        severity: DiagnosticSeverity.Error,
        source: 'MoE Studio',
        message: `Line ${line + 1} is not valid JSON: ${(error as Error).message}. Profiling will skip or stop on it.`,
      });
    }
  }
  return diagnostics;
}
