import { type CodeAction, CodeActionKind, type Range } from 'vscode-languageserver/node';
import type { TextDocument } from 'vscode-languageserver-textdocument';
import { type PlanAnalysis, toDiagnostic, toRange } from './analysis';

/** The parser's fixes for the problems that touch `range`, each linked to its diagnostic. */
export function planCodeActions(document: TextDocument, analysis: PlanAnalysis, range: Range): CodeAction[] {
  const start = document.offsetAt(range.start);
  const end = document.offsetAt(range.end);
  return analysis.problems.flatMap((problem): CodeAction[] => {
    const { fix } = problem;
    if (!fix || problem.range.offset > end || problem.range.offset + problem.range.length < start) return [];
    return [{
      title: fix.title,
      kind: CodeActionKind.QuickFix,
      diagnostics: [toDiagnostic(document, problem)],
      isPreferred: true,
      edit: { changes: { [document.uri]: fix.edits.map((edit) => ({ range: toRange(document, edit), newText: edit.newText })) } },
    }];
  });
}
