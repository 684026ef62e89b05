import type { ModelSpec } from '../checkpoint/modelSpec';
import type { ForwardProgress, ForwardResult, ForwardVariantsRequest } from './forwardTypes';
import type { MemoryPlan } from './memoryBudget';
import type { EngineOptions, LayerTiming } from './modelEngine';
import { isUserError, UserError } from '../errors';

/** The model as the main thread sees it: the spec without its tensor-name functions (they do not clone). */
export type ModelSummary = Omit<ModelSpec, 'tensors'>;

export interface SerializedError {
  name: string;
  message: string;
  stack?: string;
  /** A user's mistake (a bad file): rebuilt as a UserError so it is reported as one line, without a stack. */
  userError?: boolean;
}

/** Main thread -> worker. `cancelFlag` is a shared Int32Array(1) the worker polls between layers. */
export type WorkerRequest =
  | { type: 'open'; folder: string; options: EngineOptions }
  | { type: 'forward'; id: number; request: ForwardVariantsRequest; cancelFlag: SharedArrayBuffer; progress: boolean }
  | { type: 'measure'; id: number; layer: number; sequences: Int32Array[]; mergeMatrix?: number[][]; runsPerLoad?: number; passes?: number }
  | { type: 'expertOutputs'; id: number; layer: number; inputs: Float32Array; tokens: number }
  | { type: 'close' };

/** Worker -> main thread. */
export type WorkerResponse =
  | { type: 'opened'; model: ModelSummary; memory: MemoryPlan }
  | { type: 'progress'; id: number; progress: ForwardProgress }
  | { type: 'result'; id: number; results: ForwardResult[] }
  | { type: 'measured'; id: number; timing: LayerTiming }
  | { type: 'expertOutputs'; id: number; outputs: Float32Array[] }
  | { type: 'error'; id?: number; error: SerializedError }
  | { type: 'closed' };

export function serializeError(error: unknown): SerializedError {
  if (isUserError(error)) return { name: error.name, message: error.message, userError: true };
  if (error instanceof Error) return { name: error.name, message: error.message, stack: error.stack };
  return { name: 'Error', message: String(error) };
}

export function deserializeError(error: SerializedError): Error {
  const revived = error.userError ? new UserError(error.message) : new Error(error.message);
  revived.name = error.name;
  if (error.stack) revived.stack = error.stack;
  return revived;
}
