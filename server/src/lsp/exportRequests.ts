/**
 * `moeStudio/exportPreview` and `moeStudio/exportPlan`: what an export would change (for the preview view
 * and VS Code's diff editor on config.json), and the export itself with cancellable work-done progress.
 * An existing target answers `ExportTargetExists`, so the client can ask and retry with `overwrite`.
 */

import { basename } from 'node:path';
import { ResponseError, type CancellationToken, type Connection } from 'vscode-languageserver/node';
import {
  ErrorCodes,
  ExportPlanRequest,
  ExportPreviewRequest,
  type ExportPlanParams,
  type ExportPlanResult,
  type ExportPreviewResult,
} from '../../../common/protocol';
import { ExportError, exportPlanFile, previewPlanFile, progressMessage } from '../export';
import type { Health } from './health';
import { runModelWork, type ModelWorkContext } from './modelWork';
import { safeHandler } from './safeHandler';
import { localPath } from './paths';

export interface ExportRequestOptions {
  /** Exports write model-sized files; an untrusted workspace may only preview. */
  isTrusted: () => boolean;
}

/** Progress reports closer together than this are dropped (the last one always goes out). */
const REPORT_INTERVAL_MS = 250;

export function registerExportRequests(connection: Connection, health: Health, options: ExportRequestOptions): void {
  connection.onRequest(
    ExportPreviewRequest.type,
    safeHandler(connection, ExportPreviewRequest.method, async ({ plan }): Promise<ExportPreviewResult> => {
      const planFile = localPath(plan);
      const done = health.beginBusy(`Previewing the export of ${basename(planFile)}`);
      try {
        const preview = await withExportErrors(previewPlanFile(planFile));
        return {
          tensors: preview.tensors.map(({ name, action, bytes }) => ({ name, action, bytes })),
          bytesBefore: preview.bytesBefore,
          bytesAfter: preview.bytesAfter,
          bytesSaved: preview.bytesSaved,
          configBefore: preview.configBefore,
          configAfter: preview.configAfter,
          notExactReasons: preview.notExactReasons,
        };
      } finally {
        done();
      }
    }),
  );

  connection.onRequest(
    ExportPlanRequest.type,
    safeHandler(connection, ExportPlanRequest.method, (params, token) => runExport(params, token, { connection, health, isTrusted: options.isTrusted })),
  );
}

async function runExport(params: ExportPlanParams, token: CancellationToken, context: ModelWorkContext): Promise<ExportPlanResult> {
  const planFile = localPath(params.plan);
  const target = localPath(params.target);
  const format = params.format === 'onnx' ? 'ONNX' : 'Hugging Face';
  const request = {
    title: `Exporting ${basename(planFile)} to ${format}`,
    untrusted: 'Exporting a model is disabled in restricted mode. Trust the workspace to export.',
    workDoneToken: params.workDoneToken,
    token,
    starting: 'Opening the model',
  };
  return runModelWork(context, request, async (signal, workDone) => {
    const started = Date.now();
    let reported = 0;
    const result = await withExportErrors(
      exportPlanFile(planFile, {
        format: params.format,
        target,
        overwrite: params.overwrite === true,
        signal,
        onProgress: (progress) => {
          const now = Date.now();
          if (progress.phase === 'weights' && progress.bytesWritten < progress.bytesTotal && now - reported < REPORT_INTERVAL_MS) return;
          reported = now;
          const percentage = progress.bytesTotal > 0 ? Math.min(100, Math.floor((100 * progress.bytesWritten) / progress.bytesTotal)) : 0;
          workDone.report(percentage, progressMessage(progress, now - started));
        },
      }),
    );
    for (const stale of result.staleRemoved) context.connection.console.info(`Removed ${stale}, left by an earlier export that was killed.`);
    return { target: result.target, files: result.files.map(({ path, bytes, sha256 }) => ({ path, bytes, sha256 })), ...(result.modelCard !== undefined ? { modelCard: result.modelCard } : {}) };
  });
}

/** Export failures as the client sees them: an existing target is a question for the user, not a failure. */
async function withExportErrors<T>(work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (error) {
    if (!(error instanceof ExportError)) throw error;
    if (error.code === 'targetExists') throw new ResponseError(ErrorCodes.ExportTargetExists, error.message);
    if (error.code === 'cancelled') throw new ResponseError(ErrorCodes.Cancelled, error.message);
    throw new ResponseError(ErrorCodes.InvalidInput, error.message);
  }
}

