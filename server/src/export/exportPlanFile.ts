/**
 * Export from a plan file, the one entry point the language server and the CLI share: open the model the
 * plan names, check the plan against it, preview or write the export, close the model.
 */

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ExportFormat } from '../../../common/protocol';
import { loadPlanForExport, loadPlanForPreview } from './fromPlan';
import type { WrittenFile } from './hashedFile';
import { exportHuggingFace, type ExportProgress } from './hfExport';
import { exportOnnx } from './onnxExport';
import { previewExport, type ExportPreview } from './previewExport';

export interface PlanFileExportOptions {
  format: ExportFormat;
  /** The new model folder (Hugging Face) or `.onnx` file. */
  target: string;
  overwrite?: boolean;
  /** Hugging Face only: largest safetensors shard. */
  shardBytes?: number;
  signal?: AbortSignal;
  onProgress?: (progress: ExportProgress) => void;
}

export interface PlanFileExportResult {
  /** The folder or .onnx file written. */
  target: string;
  files: WrittenFile[];
  /** README.md of a Hugging Face export. */
  modelCard?: string;
  /** Partial folders of earlier, killed exports beside the target, removed by this one. */
  staleRemoved: string[];
}

/** What the export of a plan would write; the model's tokenizer is not read. */
export async function previewPlanFile(planFile: string): Promise<ExportPreview> {
  const { source, exportPlan } = await loadPlanForPreview(planFile);
  try {
    return previewExport(source, exportPlan);
  } finally {
    await source.weights.close();
  }
}

export async function exportPlanFile(planFile: string, options: PlanFileExportOptions): Promise<PlanFileExportResult> {
  const { source, exportPlan } = await loadPlanForExport(planFile);
  try {
    const { target, overwrite, signal, onProgress } = options;
    if (options.format === 'onnx') {
      const result = await exportOnnx(source, exportPlan, target, { overwrite, signal, onProgress });
      return { target: result.file, files: result.files, staleRemoved: result.staleRemoved };
    }
    const result = await exportHuggingFace(source, exportPlan, target, { overwrite, signal, onProgress, shardBytes: options.shardBytes });
    return { target: result.folder, files: result.files, modelCard: await readFile(join(result.folder, 'README.md'), 'utf8'), staleRemoved: result.staleRemoved };
  } finally {
    await source.weights.close();
  }
}

/** "1.2 GB of 3.9 GB · 130 MB/s", from the bytes written so far and the time since the export started. */
export function progressMessage(progress: ExportProgress, elapsedMs: number): string {
  if (progress.phase === 'verifying') return 'Verifying the written model';
  if (progress.phase === 'finishing') return 'Moving the export into place';
  const rate = elapsedMs > 0 ? progress.bytesWritten / (elapsedMs / 1000) : 0;
  return `${byteSize(progress.bytesWritten)} of ${byteSize(progress.bytesTotal)} · ${byteSize(rate)}/s`;
}

function byteSize(bytes: number): string {
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(1)} GB`;
  if (bytes >= 1e6) return `${Math.round(bytes / 1e6)} MB`;
  return `${Math.round(bytes / 1e3)} kB`;
}

/** "5GB", "500MB", "2GiB", "1e9" → bytes, as transformers reads `max_shard_size`; undefined when not a size. */
export function parseByteSize(text: string): number | undefined {
  const match = /^\s*(\d+(?:\.\d+)?(?:e\d+)?)\s*(k|m|g|t)?(i)?b?\s*$/i.exec(text);
  if (!match) return undefined;
  const [, number, unit, binary] = match;
  const power = unit ? 'kmgt'.indexOf(unit.toLowerCase()) + 1 : 0;
  const bytes = Number(number) * (binary ? 1024 : 1000) ** power;
  return Number.isFinite(bytes) && bytes > 0 ? Math.round(bytes) : undefined;
}
