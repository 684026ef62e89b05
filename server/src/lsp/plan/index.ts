/**
 * The editor features of `*.moeplan.json` files: diagnostics (the plan parser's problems, checked against
 * the model the plan names), quick fixes, hovers, completion and code lenses. Every feature reads the one
 * analysis of the document (analysis.ts); a hand-edited plan, however broken, produces diagnostics or a
 * log line, never a dead server.
 */
import { basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  CodeActionKind,
  DiagnosticSeverity,
  type Connection,
  type Diagnostic,
  type InitializeParams,
  type ServerCapabilities,
  type TextDocuments,
} from 'vscode-languageserver/node';
import type { TextDocument } from 'vscode-languageserver-textdocument';
import { errorMessage, isUserError } from '../../errors';
import type { Health } from '../health';
import type { HoverProviders } from '../hovers';
import { type EditorProblem, type PlanAnalysis, analysePlanText, isPlanUri, modelFolderNode, planTree, toDiagnostic } from './analysis';
import { planCodeActions } from './codeActions';
import { planCodeLenses } from './codeLens';
import { planCompletions } from './completion';
import { type HoverProfile, planHover } from './hover';
import { heavyMergeProblems } from './mergeDiagnostics';
import { ModelSpecCache, ProfileCache, resolvePlanPath } from './resources';

export { profileStatsForHover } from './profileStats';

/** Typing pauses shorter than this do not re-validate: a checkpoint load per keystroke helps nobody. */
const REVALIDATE_DELAY_MS = 200;

export interface PlanFeatures {
  /** Call from onInitialize: remembers the workspace folders and returns the capabilities to merge in. */
  initialize(params: InitializeParams): ServerCapabilities;
}

export function registerPlanFeatures(connection: Connection, documents: TextDocuments<TextDocument>, health: Health, hovers: HoverProviders): PlanFeatures {
  const plans = new PlanDocuments(connection, documents, health);
  documents.onDidChangeContent(({ document }) => {
    if (isPlanUri(document.uri)) plans.schedule(document.uri);
  });
  documents.onDidClose(({ document }) => plans.forget(document.uri));

  hovers.add(plans.guarded('hover', null, async (document, { position }) => {
    const analysis = plans.current(document);
    return planHover(document, analysis, document.offsetAt(position), await plans.profile(document, analysis));
  }));
  connection.onCompletion(plans.guarded('completion', [], async (document, { position }) => {
    const analysis = plans.current(document);
    return planCompletions(document, analysis, document.offsetAt(position), (await plans.profile(document, analysis))?.json);
  }));
  connection.onCodeAction(plans.guarded('code actions', [], (document, { range }) => planCodeActions(document, plans.current(document), range)));
  connection.onCodeLens(plans.guarded('code lenses', [], (document) => planCodeLenses(document, plans.current(document))));

  return {
    initialize(params) {
      plans.workspaceFolders = workspaceFolderPaths(params);
      return {
        hoverProvider: true,
        completionProvider: { triggerCharacters: ['"', '[', ','] },
        codeActionProvider: { codeActionKinds: [CodeActionKind.QuickFix] },
        codeLensProvider: { resolveProvider: false },
      };
    },
  };
}

function workspaceFolderPaths(params: InitializeParams): string[] {
  const uris = params.workspaceFolders?.map((folder) => folder.uri) ?? (params.rootUri ? [params.rootUri] : []);
  return uris.flatMap((uri) => localPath(uri) ?? []);
}

function localPath(uri: string): string | undefined {
  return uri.startsWith('file:') ? fileURLToPath(uri) : undefined;
}

class PlanDocuments {
  workspaceFolders: string[] = [];
  private readonly analyses = new Map<string, PlanAnalysis>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly specs: ModelSpecCache;
  private readonly profiles = new ProfileCache();

  constructor(
    private readonly connection: Connection,
    private readonly documents: TextDocuments<TextDocument>,
    health: Health,
  ) {
    this.specs = new ModelSpecCache((folder) => health.beginBusy(`Reading model ${basename(folder)}`));
  }

  schedule(uri: string): void {
    clearTimeout(this.timers.get(uri));
    this.timers.set(uri, setTimeout(() => void this.validate(uri), REVALIDATE_DELAY_MS));
  }

  forget(uri: string): void {
    clearTimeout(this.timers.get(uri));
    this.timers.delete(uri);
    this.analyses.delete(uri);
  }

  /** The analysis of the document as it is now; between validations, re-parsed with the last spec. */
  current(document: TextDocument): PlanAnalysis {
    const cached = this.analyses.get(document.uri);
    if (cached?.version === document.version) return cached;
    const analysis = analysePlanText(document.getText(), document.version, cached?.spec);
    this.analyses.set(document.uri, analysis);
    return analysis;
  }

  /** The profile the plan names, when it can be read; a hover without statistics is fine otherwise. */
  async profile(document: TextDocument, analysis: PlanAnalysis): Promise<HoverProfile | undefined> {
    const written = analysis.parsed.plan?.calibration.profile;
    if (!written) return undefined;
    try {
      return { json: await this.profiles.get(await resolvePlanPath(written, localPath(document.uri), this.workspaceFolders)), label: written };
    } catch (error) {
      this.connection.console.warn(`Profile ${written} named by ${document.uri} could not be read: ${errorMessage(error)}`);
      return undefined;
    }
  }

  /** A request handler that only answers for plan files and turns any failure into `fallback` and a log line. */
  guarded<P extends { textDocument: { uri: string } }, R>(
    feature: string,
    fallback: R,
    handler: (document: TextDocument, params: P) => Promise<R> | R,
  ): (params: P) => Promise<R> {
    return async (params) => {
      const document = this.documents.get(params.textDocument.uri);
      if (!document || !isPlanUri(document.uri)) return fallback;
      try {
        return await handler(document, params);
      } catch (error) {
        this.connection.console.error(`Plan ${feature} failed for ${document.uri}: ${error instanceof Error ? error.stack : error}`);
        return fallback;
      }
    };
  }

  private async validate(uri: string): Promise<void> {
    this.timers.delete(uri);
    const document = this.documents.get(uri);
    if (!document) return;
    let diagnostics: Diagnostic[];
    try {
      const analysis = await this.analyse(document);
      const now = this.documents.get(uri);
      // Closed, or edited while the model loaded: the edit's own validation reports instead.
      if (!now || now.version !== analysis.version) return;
      this.analyses.set(uri, analysis);
      diagnostics = analysis.problems.map((problem) => toDiagnostic(now, problem));
    } catch (error) {
      this.connection.console.error(`Validating ${uri} failed: ${error instanceof Error ? error.stack : error}`);
      diagnostics = [{
        range: { start: { line: 0, character: 0 }, end: { line: 0, character: 0 } },
        severity: DiagnosticSeverity.Error,
        source: 'MoE Studio',
        code: 'internal',
        message: `MoE Studio could not check this plan (${errorMessage(error)}); the server log has the details.`,
      }];
    }
    void this.connection.sendDiagnostics({ uri, version: document.version, diagnostics });
  }

  /** Loads the model the plan names (cached per folder) and checks the plan against it. */
  private async analyse(document: TextDocument): Promise<PlanAnalysis> {
    const text = document.getText();
    const version = document.version;
    const folderNode = modelFolderNode(planTree(text));
    const modelProblems: EditorProblem[] = [];
    let spec;
    if (folderNode && typeof folderNode.value === 'string' && folderNode.value !== '') {
      try {
        spec = await this.specs.get(await resolvePlanPath(folderNode.value, localPath(document.uri), this.workspaceFolders));
      } catch (error) {
        if (!isUserError(error)) this.connection.console.error(`Loading the model of ${document.uri} failed: ${error instanceof Error ? error.stack : error}`);
        modelProblems.push({
          severity: 'error',
          code: 'modelUnavailable',
          message: `The model cannot be loaded, so the plan is checked without it: ${errorMessage(error)}`,
          range: { offset: folderNode.offset, length: folderNode.length },
        });
      }
    }
    const analysis = analysePlanText(text, version, spec, modelProblems);
    const mergeProblems = heavyMergeProblems(analysis, await this.profile(document, analysis));
    return mergeProblems.length > 0 ? { ...analysis, problems: [...analysis.problems, ...mergeProblems] } : analysis;
  }
}
