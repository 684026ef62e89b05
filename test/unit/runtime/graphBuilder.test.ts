import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../../../server/src/runtime/graphBuilder';
import { ModelProto } from '../../../server/src/runtime/onnxSchema';

describe('GraphBuilder outputs', () => {
  it('names a computed output on the node that makes it, and copies only inputs and second names', async () => {
    const g = new GraphBuilder('outputs');
    const x = g.input('x', 'float', [3]);
    const doubled = g.op('Mul', [x, g.constFloat([2])]);
    g.output(doubled, 'doubled', 'float', [3]);
    // Used after it was declared an output: the renaming must reach this node too.
    g.output(g.op('Add', [doubled, g.constFloat([1])]), 'plus_one', 'float', [3]);
    g.output(x, 'echo', 'float', [3]);
    g.output(doubled, 'doubled_again', 'float', [3]);

    const model = await g.serialize();
    assert.equal(model.kind, 'bytes');
    const bytes = (model as { bytes: Uint8Array }).bytes;
    const nodes = (ModelProto.toObject(ModelProto.decode(bytes), { arrays: true }) as { graph: { node: { op_type: string }[] } }).graph.node;
    assert.deepEqual(nodes.map((n) => n.op_type).sort(), ['Add', 'Identity', 'Identity', 'Mul']);

    const session = await ort.InferenceSession.create(bytes);
    try {
      const out = await session.run({ x: new ort.Tensor('float32', Float32Array.of(1, -2, 0.5), [3]) });
      assert.deepEqual([...(out.doubled.data as Float32Array)], [2, -4, 1]);
      assert.deepEqual([...(out.plus_one.data as Float32Array)], [3, -3, 2]);
      assert.deepEqual([...(out.echo.data as Float32Array)], [1, -2, 0.5]);
      assert.deepEqual([...(out.doubled_again.data as Float32Array)], [2, -4, 1]);
    } finally {
      await session.release();
    }
  });
});
