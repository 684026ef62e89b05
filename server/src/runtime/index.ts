/**
 * The runtime stage's public surface: run a checkpoint with onnxruntime in a worker thread.
 * `ModelEngine` (the in-thread engine) is deliberately not exported here: importing it loads the native
 * onnxruntime binding, which the language server's thread never needs. Import './modelEngine' directly
 * where blocking the thread is fine (the worker, tests, CLI batch jobs).
 */
export { ModelRuntime, resolveWorkerPath, type ForwardCallOptions, type RuntimeOptions } from './modelRuntime';
export type { EngineOptions } from './modelEngine';
export { ForwardCancelledError, forwardProgressMessage, type ForwardOutputs, type ForwardProgress, type ForwardRequest, type ForwardResult, type ForwardVariantsRequest, type MoeLayerCapture, type SequenceResult } from './forwardTypes';
export { defaultMemoryBudget, formatBytes, MemoryBudgetError, planMemory, PRECISIONS, workSetTokens, type MemoryPlan, type Precision, type ResidencyPolicy } from './memoryBudget';
export { resolveLayerPlan, firstChangedLayer, type LayerPlan, type RuntimePlan, type ResolvedLayerPlan } from './runtimePlan';
export type { ModelSummary } from './runtimeProtocol';
export { estimateWork, formatDuration, type WorkEstimate, type WorkShape } from './estimate';
export type { LayerTiming } from './modelEngine';
