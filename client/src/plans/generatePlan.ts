import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { LanguageClient } from 'vscode-languageclient/node';
import { DescribeModelRequest, GeneratePlanRequest, type GenerateMethodName } from '../../../common/protocol';
import type { FieldSpec } from '../../../server/src/profile/types';
import { chooseDatasets } from '../datasetChoice';
import { chooseTextField } from '../fieldChoice';
import { chooseModel } from '../modelChoice';
import { lastProfiledDataset } from '../profileRegistry';
import { withServerProgress } from '../progress';

/** Fast methods with good quality first (Enter picks REAP); the search methods, slowest, last. */
const METHODS: { method: GenerateMethodName; label: string; detail: string; parameters?: Record<string, unknown> }[] = [
  { method: 'reap', label: 'REAP', detail: 'Drops the experts with the lowest mean gate × ‖expert output‖ over routed tokens. Fast (one pass over the calibration data), good quality.' },
  { method: 'frequency', label: 'Frequency', detail: 'Keeps the experts routed to most often on the calibration data. Fastest.' },
  { method: 'softCount', label: 'Soft count', detail: 'Keeps the experts with the largest sum of gate weights.' },
  { method: 'naee', label: 'NAEE (subset search)', detail: "Per layer, the kept subset that best reconstructs the layer's output on calibration tokens." },
  { method: 'uncurl', label: 'UNCURL (cluster and merge)', detail: 'Clusters experts by router-logit similarity on the task, keeps the most used per cluster and merges the rest into it.' },
  {
    method: 'uncurl',
    label: 'UNCURL, centred logits',
    detail: 'UNCURL clustering on the correlation of router logits: for tasks that use only a few experts, which plain UNCURL would merge into one.',
    parameters: { similarity: 'correlation' },
  },
  { method: 'eep', label: 'EEP (evolutionary search)', detail: 'Gradient-free search over router mapping and expert merging; fitness is task quality on calibration samples. Best quality, slowest (minutes).' },
  { method: 'random', label: 'Random (baseline)', detail: 'A seeded random subset: the floor every method should beat.' },
  { method: 'adaptiveGating', label: 'Adaptive gating (keeps every expert)', detail: 'A token runs only its first expert when its router is confident (p1 − p2 > T): fewer active parameters per token, same memory.' },
];

/** Adaptive gating's target: a share of single-expert tokens, or a bound on the calibration loss. */
const GATING_TARGETS: { label: string; detail: string; singleExpertShare?: number; maxLossIncrease?: number }[] = [
  ...[0.5, 0.7, 0.9].map((share) => ({ label: `${100 * share}% of tokens on one expert`, detail: 'Per layer, the threshold that reaches this share on the calibration data.', singleExpertShare: share })),
  ...[0.01, 0.02, 0.05].map((bound) => ({ label: `At most +${bound} nats of loss`, detail: 'Per layer, the smallest threshold that keeps the calibration loss within an equal part of this bound (measured, a few forwards per layer).', maxLossIncrease: bound })),
];

/** "Generate pruning plan": quick picks for the method, the target count and the calibration data. */
export async function generatePlan(context: vscode.ExtensionContext, client: LanguageClient, scope?: vscode.Uri): Promise<void> {
  const workspaceFolder = (scope && vscode.workspace.getWorkspaceFolder(scope)) ?? vscode.workspace.workspaceFolders?.[0];
  if (!workspaceFolder) {
    void vscode.window.showErrorMessage('Open a workspace folder to generate plans in.');
    return;
  }
  const model = await chooseModel(context, client, scope ?? workspaceFolder.uri);
  if (!model) return;
  const summary = await client.sendRequest(DescribeModelRequest.type, { folder: model });

  const method = await vscode.window.showQuickPick(METHODS.map((entry) => ({ ...entry, detail: entry.detail })), { title: 'Pruning method', matchOnDetail: true });
  if (!method) return;

  const E = summary.numExperts;
  let target: { count?: number; name: string; parameters?: Record<string, unknown>; singleExpertShare?: number } | undefined;
  if (method.method === 'adaptiveGating') {
    const gating = await vscode.window.showQuickPick(GATING_TARGETS, { title: 'Adaptive gating: how far to go?' });
    if (!gating) return;
    target = gating.singleExpertShare !== undefined
      ? { name: `share${100 * gating.singleExpertShare}`, singleExpertShare: gating.singleExpertShare }
      : { name: `loss${gating.maxLossIncrease}`, parameters: { maxLossIncrease: gating.maxLossIncrease } };
  } else {
    const threshold = E >= 64 ? 2 : 4;
    const counts = Array.from({ length: E - 1 }, (_, i) => E - 1 - i);
    const picked = await vscode.window.showQuickPick(
      counts.map((count) => ({
        label: `Keep ${count} of ${E} experts per layer`,
        description: `${(E / count).toFixed(1)}× fewer experts`,
        // UNCURL's paper measured where merging stops holding quality; that threshold is about UNCURL only.
        detail: method.method === 'uncurl' && E / count > threshold ? `$(warning) Past UNCURL's threshold (~${threshold}×): expect quality to drop` : undefined,
        count,
      })),
      { title: `How many experts should each of the ${summary.moeLayers.length} MoE layers keep?` },
    );
    if (!picked) return;
    target = { count: picked.count, name: `keep${picked.count}` };
  }

  const calibration = await chooseDatasets(context, { title: 'Calibration data (the task to keep quality on)', canPickMany: true, remember: 'moeStudio.calibration', preferMatching: /train/, first: lastProfiledDataset() });
  if (!calibration) return;
  const withFields: { file: string; field: FieldSpec }[] = [];
  for (const file of calibration) {
    const field = await chooseTextField(context, client, file);
    if (!field) return;
    withFields.push({ file: file.fsPath, field });
  }

  const plansFolder = path.join(workspaceFolder.uri.fsPath, 'plans');
  const stem = `${path.basename(calibration[0].fsPath).replace(/\.(train|valid)?\.?[^.]+$/, '')}.${method.method}-${target.name}`;
  const output = uniquePath(plansFolder, stem, '.moeplan.json');
  const request = {
    model,
    method: method.method,
    targetExperts: target.count,
    calibration: withFields,
    seed: 0,
    output,
    parameters: { ...method.parameters, ...target.parameters },
    singleExpertShare: target.singleExpertShare,
  };
  const result = await withServerProgress(client, `Generating a ${method.label} plan`, (workDoneToken, token) =>
    client.sendRequest(GeneratePlanRequest.type, { ...request, workDoneToken }, token));
  if (!result) return;
  await vscode.window.showTextDocument(vscode.Uri.file(result.planPath));
  for (const warning of result.warnings ?? []) void vscode.window.showWarningMessage(warning);
}

function uniquePath(folder: string, stem: string, extension: string): string {
  for (let n = 1; ; n++) {
    const candidate = path.join(folder, `${stem}${n > 1 ? `-${n}` : ''}${extension}`);
    if (!fs.existsSync(candidate)) return candidate;
  }
}
