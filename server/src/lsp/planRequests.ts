/**
 * The plan requests of common/protocol.ts: generate a plan file, evaluate a plan, preview it, and sweep
 * methods over expert counts. Each reports work-done progress on the client's token, cancels through
 * the request's token, shows the server busy, and refuses to run a model in an untrusted workspace.
 * Models stay open across requests in the profile stage's runtime pool.
 */
import * as path from 'node:path';
import type { Connection } from 'vscode-languageserver/node';
import {
  EvaluatePlanRequest,
  GeneratePlanRequest,
  PreviewPlanRequest,
  SweepRequest,
} from '../../../common/protocol';
import { evaluatePlanFile } from '../evaluate';
import { generatePlanFile, previewPlanFile, runSweep } from '../plan/run';
import { sharedRuntimes } from '../profile/run';
import type { RuntimePool } from '../profile/run/runtimePool';
import type { Health } from './health';
import { runModelWork } from './modelWork';
import { safeHandler } from './safeHandler';
import { localPath } from './paths';

export interface PlanRequestOptions {
  /** Whether the workspace is trusted; no model runs until it is. */
  isTrusted: () => boolean;
  /** Workspace folders (paths): plans write paths relative to them, and baselines are cached under the first's `.moe-studio/`. */
  workspaceFolders?: () => string[];
  /** onnxruntime threads (the `moeStudio.threads` setting); 0 = all cores but one. */
  threads?: () => number;
  runtimes?: RuntimePool;
}

/** EEP in a sweep runs once per method and count: a small budget keeps a sweep interactive. */
const SWEEP_EEP_BUDGET = 100;

export function registerPlanRequests(connection: Connection, health: Health, options: PlanRequestOptions): void {
  const runtimes = options.runtimes ?? sharedRuntimes;
  const threads = () => options.threads?.() ?? 0;
  const workspaceFor = (file: string) => {
    const folders = options.workspaceFolders?.() ?? [];
    return folders.find((folder) => !path.relative(folder, file).startsWith('..')) ?? folders[0];
  };

  /** The common frame of a model-running request: trust, busy state, progress, cancellation. */
  const running = <P extends { workDoneToken?: string | number }, R>(method: string, title: string, work: (params: P, context: RequestContext) => Promise<R>) =>
    safeHandler<P, R>(connection, method, (params, token) =>
      runModelWork(
        { connection, health, isTrusted: options.isTrusted },
        { title, untrusted: `${title} runs the model, which MoE Studio does not do in an untrusted workspace. Trust the workspace to continue.`, workDoneToken: params.workDoneToken, token, starting: 'Starting' },
        (signal, workDone) => work(params, {
          signal,
          report: (message, fraction) => (fraction === undefined ? workDone.report(message) : workDone.report(Math.round(100 * Math.min(1, Math.max(0, fraction))), message)),
        }),
      ));

  connection.onRequest(GeneratePlanRequest.type, running(GeneratePlanRequest.method, 'Generating a plan', async (params, { signal, report }) => {
    const output = localPath(params.output);
    const result = await generatePlanFile({
      model: localPath(params.model),
      method: params.method,
      targetExperts: params.targetExperts,
      calibration: params.calibration.map(({ file, field }) => ({ file: localPath(file), field })),
      profilePath: params.profilePath && localPath(params.profilePath),
      seed: params.seed,
      parameters: params.parameters,
      singleExpertShare: params.singleExpertShare,
      output,
      workspaceFolder: workspaceFor(output),
      threads: threads(),
      runtimes,
      signal,
      onProgress: (message, eep) => report(message, eep ? eep.evaluations / Number(params.parameters?.budget ?? 1000) : undefined),
    });
    return { planPath: result.planPath, plan: result.plan, warnings: result.warnings };
  }));

  connection.onRequest(EvaluatePlanRequest.type, running(EvaluatePlanRequest.method, 'Evaluating a plan', async (params, { signal, report }) => {
    const plan = localPath(params.plan);
    const result = await evaluatePlanFile({
      plan,
      datasets: params.datasets.map(({ file, field }) => ({ file: localPath(file), field })),
      maxRows: params.maxRows,
      workspaceFolder: workspaceFor(plan),
      threads: threads(),
      runtimes,
      signal,
      onProgress: ({ message, fraction }) => report(message, fraction),
    });
    return { evaluations: result.evaluations, updatedPlanText: result.updatedPlanText };
  }));

  // Preview reads the checkpoint's headers and config only: no model runs, so it is allowed untrusted.
  connection.onRequest(PreviewPlanRequest.type, safeHandler(connection, PreviewPlanRequest.method, async ({ plan, text }) => {
    const file = localPath(plan);
    return previewPlanFile(file, text, options.workspaceFolders?.() ?? []);
  }));

  connection.onRequest(SweepRequest.type, running(SweepRequest.method, 'Sweeping expert counts', async (params, { signal, report }) => {
    const model = localPath(params.model);
    return runSweep({
      model,
      methods: params.methods,
      counts: params.counts,
      calibration: params.calibration.map(({ file, field }) => ({ file: localPath(file), field })),
      evaluation: { file: localPath(params.evaluation.file), field: params.evaluation.field },
      metric: params.metric,
      seed: params.seed,
      maxRows: params.maxRows,
      parameters: { eep: { budget: SWEEP_EEP_BUDGET } },
      workspaceFolder: workspaceFor(model),
      threads: threads(),
      runtimes,
      signal,
      onProgress: report,
    });
  }));
}

interface RequestContext {
  signal: AbortSignal;
  report: (message: string, fraction?: number) => void;
}

