import * as vscode from 'vscode';
import type { LanguageClient } from 'vscode-languageclient/node';
import { PlanCommands } from '../../common/protocol';
import { compareWithProfile } from './compareProfiles';
import { comparePlans } from './plans/comparePlans';
import { evaluatePlan } from './plans/evaluatePlan';
import { exportPlan } from './plans/exportPlan';
import { generatePlan } from './plans/generatePlan';
import { previewPlan } from './plans/previewPlan';
import { VirtualDocuments } from './virtualDocuments';
import { profileDataset } from './profileCommand';
import { RoutingDecorations } from './routingDecorations';

/** Everything a command needs, resolved once at activation. */
export interface CommandContext {
  extension: vscode.ExtensionContext;
  client: () => LanguageClient | undefined;
  output: vscode.LogOutputChannel;
}

export function registerCommands(ctx: CommandContext): vscode.Disposable[] {
  const decorations = new RoutingDecorations(ctx.client);
  const documents = new VirtualDocuments();
  return [
    decorations,
    documents,
    command('moeStudio.generatePlan', ctx, async (client, uri?: vscode.Uri) => {
      if (requireTrust('generate plans')) await generatePlan(ctx.extension, client, uri instanceof vscode.Uri ? uri : undefined);
    }),
    command(PlanCommands.evaluate, ctx, async (client, plan?: string | vscode.Uri) => {
      const uri = planUri(plan);
      if (uri && requireTrust('evaluate plans')) await evaluatePlan(ctx.extension, client, uri);
    }),
    command(PlanCommands.preview, ctx, async (client, plan?: string | vscode.Uri) => {
      const uri = planUri(plan);
      if (uri) await previewPlan(ctx.extension, client, documents, uri);
    }),
    command(PlanCommands.export, ctx, async (client, plan?: string | vscode.Uri) => {
      const uri = planUri(plan);
      if (uri && requireTrust('export checkpoints')) await exportPlan(client, documents, uri);
    }),
    command('moeStudio.comparePlans', ctx, async (_client, plan?: vscode.Uri) => comparePlans(plan instanceof vscode.Uri ? plan : undefined)),
    command('moeStudio.profileDataset', ctx, async (client, uri?: vscode.Uri) => {
      const dataset = datasetUri(uri);
      if (dataset && requireTrust('profile experts')) await profileDataset(ctx.extension, client, dataset);
    }),
    command('moeStudio.toggleRoutingDecorations', ctx, async () => decorations.toggle(vscode.window.activeTextEditor)),
    command('moeStudio.compareProfiles', ctx, async (client, uri?: vscode.Uri) => {
      const dataset = datasetUri(uri);
      if (dataset) await compareWithProfile(ctx.extension, client, dataset);
    }),
    vscode.commands.registerCommand('moeStudio.showServerLog', () => ctx.output.show(true)),
    vscode.commands.registerCommand('moeStudio.restartServer', async () => {
      await ctx.client()?.restart();
    }),
  ];
}

/**
 * Registers a command that needs the server, reporting any failure once, as an error message with
 * the server's own words (they name the file and the problem).
 */
export function command<A extends unknown[]>(id: string, ctx: CommandContext, run: (client: LanguageClient, ...args: A) => Promise<unknown>): vscode.Disposable {
  return vscode.commands.registerCommand(id, async (...args: A) => {
    const client = ctx.client();
    if (!client) {
      void vscode.window.showErrorMessage('The MoE Studio server is not running. See the MoE Studio output.', 'Show Log').then((choice) => choice && ctx.output.show());
      return;
    }
    try {
      await run(client, ...args);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      ctx.output.error(`${id}: ${message}`);
      void vscode.window.showErrorMessage(message);
    }
  });
}

/** Code lenses pass the plan URI as a string; menus pass a Uri; the palette passes nothing. */
function planUri(plan: string | vscode.Uri | undefined): vscode.Uri | undefined {
  if (plan instanceof vscode.Uri) return plan;
  if (typeof plan === 'string') return vscode.Uri.parse(plan);
  const active = vscode.window.activeTextEditor?.document.uri;
  if (active?.path.endsWith('.moeplan.json')) return active;
  void vscode.window.showErrorMessage('Open a *.moeplan.json plan first.');
  return undefined;
}

function datasetUri(uri: vscode.Uri | undefined): vscode.Uri | undefined {
  const dataset = uri instanceof vscode.Uri ? uri : vscode.window.activeTextEditor?.document.uri;
  if (!dataset) void vscode.window.showErrorMessage('Open or select a dataset file (JSONL, JSON, CSV, Parquet or text) first.');
  return dataset;
}

/** In an untrusted workspace nothing runs a model: say why and offer the way out. */
export function requireTrust(what: string): boolean {
  if (vscode.workspace.isTrusted) return true;
  void vscode.window.showWarningMessage(
    `MoE Studio runs models only in trusted workspaces, because model folders and data are code-like input. Trust this workspace to ${what}.`,
    'Manage Workspace Trust',
  ).then((choice) => choice && vscode.commands.executeCommand('workbench.trust.manage'));
  return false;
}
