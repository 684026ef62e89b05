/**
 * The MoE Studio language server: the process that reads checkpoints and datasets and runs models,
 * so the extension host never blocks on them. It speaks LSP over stdio (or IPC when VS Code starts it)
 * plus the custom `moeStudio/*` requests of common/protocol.ts.
 */
import { fileURLToPath } from 'node:url';
import {
  ProposedFeatures,
  TextDocumentSyncKind,
  TextDocuments,
  createConnection,
  type InitializeResult,
} from 'vscode-languageserver/node';
import { TextDocument } from 'vscode-languageserver-textdocument';
import {
  DescribeModelRequest,
  SummarizeDatasetRequest,
  TrustNotification,
  type InitializationOptions,
} from '../../common/protocol';
import { loadCheckpoint } from './checkpoint';
import { describeCheckpoint } from './checkpoint/describe';
import { summarizeDataset } from './datasets/summarize';
import { jsonlDiagnostics } from './lsp/datasetDiagnostics';
import { Health } from './lsp/health';
import { HoverProviders } from './lsp/hovers';
import { safeHandler } from './lsp/safeHandler';
import { registerPlanFeatures } from './lsp/plan';
import { registerExportRequests } from './lsp/exportRequests';
import { registerProfileFeatures } from './lsp/profileFeatures';
import { registerPlanRequests } from './lsp/planRequests';
import { localPath } from './lsp/paths';
import { runtimeSettings } from './lsp/runtimeSettings';
import { sharedRuntimes } from './profile/run';

const connection = createConnection(ProposedFeatures.all);
const documents = new TextDocuments(TextDocument);
const health = new Health(connection);
const hovers = new HoverProviders(connection);
let trusted = false;
let threads = 0;
let workspaceFolders: string[] = [];
const profiles = registerProfileFeatures(connection, documents, health, { isTrusted: () => trusted, hovers });
const plans = registerPlanFeatures(connection, documents, health, hovers);
registerPlanRequests(connection, health, { isTrusted: () => trusted, workspaceFolders: () => workspaceFolders, threads: () => threads });
registerExportRequests(connection, health, { isTrusted: () => trusted });

connection.onInitialize((params): InitializeResult => {
  const options = (params.initializationOptions ?? {}) as Partial<InitializationOptions>;
  trusted = options.trusted === true;
  threads = options.threads ?? 0;
  sharedRuntimes.configure({ ...runtimeSettings(options, (message) => connection.console.warn(message)), report: (line) => connection.console.info(line) });
  workspaceFolders = (params.workspaceFolders ?? []).map((folder) => fileURLToPath(folder.uri));
  return {
    capabilities: { textDocumentSync: TextDocumentSyncKind.Incremental, ...plans.initialize(params), ...profiles.initialize(params) },
    serverInfo: { name: 'MoE Studio', version: '0.1.0' },
  };
});

connection.onInitialized(() => {
  health.ready(trusted ? 'Ready' : 'Ready (restricted mode: no model runs until the workspace is trusted)');
});

// The client syncs the `moeStudio` settings section (threads, budget and precision can change while the server runs).
connection.onDidChangeConfiguration(({ settings }) => {
  const section = (settings as { moeStudio?: { threads?: unknown; memoryBudget?: unknown; precision?: unknown } } | undefined)?.moeStudio;
  if (typeof section?.threads === 'number') threads = section.threads;
  if (section) sharedRuntimes.configure(runtimeSettings(section, (message) => connection.console.warn(message)));
});

connection.onNotification(TrustNotification.type, ({ trusted: nowTrusted }) => {
  trusted = nowTrusted;
  health.ready(trusted ? 'Ready' : 'Ready (restricted mode)');
});

connection.onRequest(
  SummarizeDatasetRequest.type,
  safeHandler(connection, SummarizeDatasetRequest.method, async ({ uri }, token) => {
    const done = health.beginBusy(`Reading ${uri.split('/').pop()}`);
    try {
      return { ...(await summarizeDataset(localPath(uri), token, { sandboxed: true })), uri };
    } finally {
      done();
    }
  }),
);

connection.onRequest(
  DescribeModelRequest.type,
  safeHandler(connection, DescribeModelRequest.method, async ({ folder }) => {
    const checkpoint = await loadCheckpoint(folder);
    try {
      return describeCheckpoint(checkpoint);
    } finally {
      await checkpoint.weights.close();
    }
  }),
);

documents.onDidChangeContent(({ document }) => {
  if (document.uri.endsWith('.jsonl')) {
    void connection.sendDiagnostics({ uri: document.uri, diagnostics: jsonlDiagnostics(document) });
  }
});

documents.onDidClose(({ document }) => {
  void connection.sendDiagnostics({ uri: document.uri, diagnostics: [] });
});

// A bug in one request must not take the whole server down with it.
process.on('uncaughtException', (error) => connection.console.error(`Uncaught exception: ${error.stack ?? error}`));
process.on('unhandledRejection', (reason) => connection.console.error(`Unhandled rejection: ${reason instanceof Error ? reason.stack : reason}`));

documents.listen(connection);
connection.listen();
