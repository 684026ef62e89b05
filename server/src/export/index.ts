/** The export stage's public surface: preview and write a Hugging Face folder or one ONNX file from a plan. */

export { exportHuggingFace, DEFAULT_SHARD_BYTES, MANIFEST_FILE, type ExportOptions, type ExportProgress, type ExportResult } from './hfExport';
export { previewExport, type ExportPreview, type PreviewTensor } from './previewExport';
export type { ExportPlan, ExportLayerPlan } from './exportPlan';
export type { ExportSource, TensorAction } from './exportLayout';
export { ExportError, type ExportErrorCode } from './exportErrors';
export { nodeFileSystem, type ExportFileSystem, type WritableFile } from './exportFileSystem';
export { MOE_STUDIO_CONFIG_KEY } from './exportConfig';
export { exportOnnx, type OnnxExportOptions, type OnnxExportResult } from './onnxExport';
export { OnnxModelIO } from './onnxGraph';
export { checkPlanMatchesModel, loadPlanForExport, loadPlanForPreview, toExportPlan, type PlanForExport } from './fromPlan';
export { exportPlanFile, previewPlanFile, progressMessage, parseByteSize, type PlanFileExportOptions, type PlanFileExportResult } from './exportPlanFile';
