/**
 * The embedding lookup: the batch's tokens' rows, packed sequence after sequence. When every layer is
 * resident the whole table is a JS fp32 copy (a row copy per token). When layers stream it is not held:
 * each distinct token's row is read from the checkpoint (decoded to fp32, so the rows are identical),
 * because the table is as large as a layer's share of the budget on large-vocabulary models
 * (Qwen3-30B-A3B: 152k x 2048 fp32 is 1.2 GB) and a pass reads only the rows of its tokens.
 */
import type { ModelSpec, WeightSource } from '../checkpoint/modelSpec';

export class EmbeddingRows {
  private constructor(
    private readonly spec: ModelSpec,
    private readonly weights: WeightSource,
    private readonly table: Float32Array | undefined,
  ) {}

  static async open(spec: ModelSpec, weights: WeightSource, resident: boolean): Promise<EmbeddingRows> {
    return new EmbeddingRows(spec, weights, resident ? await weights.readFloat32(spec.tensors.embedTokens) : undefined);
  }

  /** The whole table, when it is held (a tied head is built from it). */
  get resident(): Float32Array | undefined {
    return this.table;
  }

  async embed(ids: Int32Array[]): Promise<Float32Array> {
    const H = this.spec.hiddenSize;
    const hidden = new Float32Array(ids.reduce((sum, s) => sum + s.length, 0) * H);
    const rows = this.table ? undefined : await this.readRows(ids);
    let row = 0;
    for (const sequence of ids) {
      for (const id of sequence) hidden.set(this.table ? this.table.subarray(id * H, (id + 1) * H) : rows!.get(id)!, row++ * H);
    }
    return hidden;
  }

  /** Each distinct id's row once, in id order (neighbouring rows share the page cache's pages). */
  private async readRows(ids: Int32Array[]): Promise<Map<number, Float32Array>> {
    const H = this.spec.hiddenSize;
    const distinct = [...new Set(ids.flatMap((s) => [...s]))].sort((a, b) => a - b);
    const rows = new Map<number, Float32Array>();
    for (const id of distinct) rows.set(id, await this.weights.readFloat32Range(this.spec.tensors.embedTokens, id * H, H));
    return rows;
  }
}
