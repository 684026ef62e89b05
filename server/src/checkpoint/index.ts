/** The checkpoint stage's public surface: open a model folder; read and write safetensors. */

export { loadCheckpoint, type CheckpointLoad, type CheckpointWeightsLoad, type LoadCheckpointOptions } from './loadCheckpoint';
export { CheckpointError, type CheckpointErrorCode } from './errors';
export { parseModelConfig } from './config';
export { listExpectedTensors, type ExpectedTensor } from './expectedTensors';
export { SafetensorsFile, MAX_HEADER_BYTES, type SafetensorsEntry } from './safetensors';
export { writeSafetensors, encodeSafetensorsHeader, tensorByteLength, type TensorToWrite, type TensorBytesSource } from './safetensorsWriter';
export { decodeToFloat32, encodeFloat32, bytesPerElement, type StoredDType } from './dtype';
export { openWeights, CheckpointWeights, type UncomputableTensor } from './weightFiles';
export { loadTokenizer } from './tokenizer';
export * from './modelSpec';
