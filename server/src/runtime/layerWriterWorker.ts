/**
 * Worker-thread entry of the layer writer (bundled as dist/layerWriterWorker.js; layerWriter.ts starts
 * it). It opens the checkpoint once, without a tokenizer, and on each request serialises one decoder
 * layer's graph, with its weights as ONNX external data, into the folder it is given: exactly what the
 * runtime worker would write for the same layer (the same checkpointLayerGraph), so loading
 * either file gives the same session.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { loadCheckpoint } from '../checkpoint';
import { presetInt8WeightLevels } from './int8Kernel';
import { checkpointLayerGraph } from './layerGraph';
import { serializeError } from './runtimeProtocol';
import type { LayerWriterRequest, LayerWriterResponse, LayerWriterSetup } from './layerWriter';

const port = parentPort;
if (!port) throw new Error('the layer writer must run in a worker thread');
const setup = workerData as LayerWriterSetup;
// The runtime worker probed the int8 kernel already; its answer holds for this process.
if (setup.int8Levels !== undefined) presetInt8WeightLevels(setup.int8Levels);
const opened = loadCheckpoint(setup.folder, { tokenizer: false });
opened.catch(() => undefined); // reported with the first request
// One layer at a time, in the order asked.
let queue: Promise<void> = Promise.resolve();

port.on('message', (request: LayerWriterRequest) => {
  queue = queue.then(() => write(request));
});

async function write(request: LayerWriterRequest): Promise<void> {
  try {
    const { spec, weights } = await opened;
    const graph = checkpointLayerGraph(spec, weights, request.layer, setup.precision);
    const model = await graph.serialize({ externalDataDir: request.dir, externalDataThreshold: setup.externalDataThreshold });
    port!.postMessage({ id: request.id, model } satisfies LayerWriterResponse, model.kind === 'bytes' ? [model.bytes.buffer as ArrayBuffer] : []);
  } catch (error) {
    port!.postMessage({ id: request.id, error: serializeError(error) } satisfies LayerWriterResponse);
  }
}
