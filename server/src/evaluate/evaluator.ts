/**
 * Quality of a model under a RuntimePlan, on samples tokenised once. One `Evaluator` serves hundreds of
 * `fitness(plan)` calls (EEP) on the same fixed batches, so the runtime's prefix cache resumes every
 * forward at the first layer the plan changes.
 *
 * Metrics (text data, over the counted positions: every token that predicts a next token, BOS included):
 * - `loss`: mean next-token cross-entropy in nats, token-weighted over all sequences; `perplexity` = e^loss;
 * - `kl`: mean over positions of KL(full model ‖ planned model) of the next-token distributions;
 * - `top1Agreement`: share of positions where both models' most likely next token is the same.
 * Multiple-choice data: `accuracy`, the share of items whose label has the highest choice log-likelihood.
 *
 * KL and agreement need both models' logits; they never cross into the plan's forward. Sequences go in
 * chunks of bounded tokens × vocabulary × variants, each chunk one pass with the full model as one more
 * variant beside the plans: layers before a plan's first change run once for both, and a streamed
 * model loads each layer once for all of them.
 */
import type { EvaluationMetric } from '../../../common/protocol';
import { CancelledError } from '../errors';
import { estimateWork, ForwardCancelledError, type ForwardProgress, type ModelRuntime, type RuntimePlan, type WorkEstimate, type WorkShape } from '../runtime';
import { argmax, choiceLogLikelihood, klDivergence } from './metrics';
import type { EvaluationSamples } from './samples';

export type MetricValues = Partial<Record<EvaluationMetric, number>>;

export interface EvaluationResult {
  values: MetricValues;
  /** Sequences (text) or items (multiple choice) scored. */
  samples: number;
  /** Counted positions (text) or scored choice tokens (multiple choice). */
  tokens: number;
}

export interface EvaluateOptions {
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
  /** Layer by layer within each forward (what a streamed model's progress needs). */
  onForwardProgress?: (progress: ForwardProgress) => void;
}

export const TEXT_METRICS: EvaluationMetric[] = ['loss', 'perplexity', 'kl', 'top1Agreement'];
export const CHOICE_METRICS: EvaluationMetric[] = ['accuracy'];

/** Weight of the correct choices' mean token loss in a multiple-choice fitness: breaks accuracy ties, never outweighs one item. */
const CHOICE_LOSS_TIE_BREAK = 1e-3;
/** Logit floats per side held at once for KL and agreement (64 MiB each). */
const DEFAULT_MAX_LOGIT_FLOATS = 16 * 2 ** 20;

export class Evaluator {
  private readonly maxLogitFloats: number;

  constructor(
    readonly runtime: ModelRuntime,
    readonly samples: EvaluationSamples,
    options: { maxLogitFloats?: number } = {},
  ) {
    this.maxLogitFloats = options.maxLogitFloats ?? DEFAULT_MAX_LOGIT_FLOATS;
  }

  /** The metrics this data supports. */
  get metrics(): EvaluationMetric[] {
    return this.samples.kind === 'text' ? TEXT_METRICS : CHOICE_METRICS;
  }

  get size(): number {
    return this.samples.kind === 'text' ? this.samples.sequences.length : this.samples.items.length;
  }

  async evaluate(plan: RuntimePlan | undefined, metrics: EvaluationMetric[] = this.metrics, options: EvaluateOptions = {}): Promise<EvaluationResult> {
    return (await this.evaluateMany([plan], metrics, options))[0];
  }

  /**
   * Several plans on the same samples in one pass per chunk: each layer runs (and, when layers stream,
   * loads) once for all of them and for the full model KL and agreement compare against.
   */
  async evaluateMany(plans: (RuntimePlan | undefined)[], metrics: EvaluationMetric[] = this.metrics, options: EvaluateOptions = {}): Promise<EvaluationResult[]> {
    const unsupported = metrics.filter((m) => !this.metrics.includes(m));
    if (unsupported.length > 0) throw new Error(`${unsupported.join(', ')} cannot be measured on ${this.samples.kind === 'text' ? 'text' : 'multiple-choice'} data`);
    const results = await cancellable<EvaluationResult[]>(options.signal, () => this.samples.kind === 'text'
      ? this.evaluateText(this.samples.sequences, plans, metrics, options)
      : this.evaluateChoices(this.samples.items, plans, options));
    // Only the metrics: results are cached on disk (baselines), and the per-sample parts are the fitness's.
    return results.map(({ values, samples, tokens }) => ({ values, samples, tokens }));
  }

  /**
   * Higher is better: the negative mean loss on text; on multiple choice the accuracy, minus a small
   * multiple of the correct choices' mean token loss so candidates with equal accuracy still rank.
   */
  async fitness(plan: RuntimePlan, signal?: AbortSignal): Promise<number> {
    return (await this.score(plan, signal)).value;
  }

  /**
   * The fitness with each sequence's (or item's) share of it, in sample order: the shares sum to
   * `value`, so two plans can be compared sample by sample (EEP's paired acceptance test).
   */
  async score(plan: RuntimePlan, signal?: AbortSignal): Promise<{ value: number; samples: Float64Array }> {
    return (await this.scoreMany([plan], signal))[0];
  }

  /** `score` of a whole population in one pass (EEP's generation): each layer loaded once for all of them. */
  async scoreMany(plans: RuntimePlan[], signal?: AbortSignal): Promise<{ value: number; samples: Float64Array }[]> {
    return cancellable(signal, async () => {
      if (this.samples.kind === 'text') {
        const results = await this.evaluateText(this.samples.sequences, plans, ['loss'], { signal });
        return results.map((result) => ({ value: -result.values.loss!, samples: result.sequenceLoss.map((loss) => -loss / result.tokens) }));
      }
      const n = this.samples.items.length;
      return (await this.evaluateChoices(this.samples.items, plans, { signal })).map((result) => ({
        value: result.values.accuracy! - CHOICE_LOSS_TIE_BREAK * result.correctChoiceLoss,
        samples: Float64Array.from(result.perItem, (item) => item.correct / n - (CHOICE_LOSS_TIE_BREAK * item.correctLoss) / Math.max(1, result.tokens)),
      }));
    });
  }

  /**
   * Time and peak memory of scoring `variants` plans at once, `repeats` times over (EEP: a generation per
   * repeat), from a warm-up on these samples. With `withFullModel` the full model rides along (KL, agreement).
   */
  estimate(work: { variants?: number; repeats?: number; withFullModel?: boolean; merges?: WorkShape['merges']; alongside?: WorkShape['alongside'] } = {}): Promise<WorkEstimate> {
    const sequences = this.samples.kind === 'text' ? this.samples.sequences : this.samples.items.flatMap((item) => item.choices.map((c) => c.ids));
    const variants = (work.variants ?? 1) + (work.withFullModel ? 1 : 0);
    const chunks = work.withFullModel ? chunkByTokens(sequences, Math.max(1, Math.floor(this.maxLogitFloats / this.runtime.model.vocabSize / variants))) : [sequences];
    const tokens = sequences.reduce((sum, s) => sum + s.length, 0);
    // The warm-up runs a batch like the work's: a chunk for KL and agreement can be a single sequence.
    const batchTokens = Math.min(2048, Math.max(...chunks.map((chunk) => chunk.reduce((sum, s) => sum + s.length, 0))));
    const shape: WorkShape = { tokens, variants, repeats: work.repeats, passesPerRepeat: this.runtime.memory.policy === 'resident' ? 1 : chunks.length, batchTokens, merges: work.merges, alongside: work.alongside };
    return estimateWork(this.runtime, sequences.slice(0, 64), shape, work.withFullModel ? { loss: true, logits: 'all' } : { loss: true });
  }

  /** Also each sequence's summed loss, in order (zeros unless the loss is measured); one result per plan. */
  private async evaluateText(sequences: Int32Array[], plans: (RuntimePlan | undefined)[], metrics: EvaluationMetric[], options: EvaluateOptions): Promise<(EvaluationResult & { sequenceLoss: Float64Array })[]> {
    const wantLoss = metrics.includes('loss') || metrics.includes('perplexity');
    const compare = metrics.includes('kl') || metrics.includes('top1Agreement');
    const vocab = this.runtime.model.vocabSize;
    // The full model rides along as the last variant when KL or agreement need its logits.
    const variants = compare ? [...plans, undefined] : plans;
    const chunks = compare ? chunkByTokens(sequences, Math.max(1, Math.floor(this.maxLogitFloats / vocab / variants.length))) : [sequences];
    const totals = plans.map(() => ({ sequenceLoss: new Float64Array(sequences.length), lossSum: 0, klSum: 0, agreements: 0 }));
    let positions = 0;
    let done = 0;
    for (const chunk of chunks) {
      const outputs = { loss: wantLoss, ...(compare ? { logits: 'all' as const } : {}) };
      const results = await this.runtime.forwardVariants({ sequences: chunk, outputs, plans: variants }, { signal: options.signal, onProgress: options.onForwardProgress });
      const full = compare ? results[plans.length] : undefined;
      chunk.forEach((sequence, i) => {
        const counted = sequence.length - 1;
        positions += counted;
        totals.forEach((total, v) => {
          if (wantLoss) {
            for (const value of results[v].sequences[i].loss!) total.sequenceLoss[done + i] += value;
            total.lossSum += total.sequenceLoss[done + i];
          }
          if (!full) return;
          const p = full.sequences[i].logits!;
          const q = results[v].sequences[i].logits!;
          for (let t = 0; t < counted; t++) {
            total.klSum += klDivergence(p, q, t * vocab, vocab);
            if (argmax(p, t * vocab, vocab) === argmax(q, t * vocab, vocab)) total.agreements++;
          }
        });
      });
      done += chunk.length;
      options.onProgress?.(done, sequences.length);
    }
    return totals.map((total) => {
      const values: MetricValues = {};
      if (metrics.includes('loss')) values.loss = total.lossSum / positions;
      if (metrics.includes('perplexity')) values.perplexity = Math.exp(total.lossSum / positions);
      if (metrics.includes('kl')) values.kl = total.klSum / positions;
      if (metrics.includes('top1Agreement')) values.top1Agreement = total.agreements / positions;
      return { values, samples: sequences.length, tokens: positions, sequenceLoss: total.sequenceLoss };
    });
  }

  private async evaluateChoices(items: Extract<EvaluationSamples, { kind: 'choice' }>['items'], plans: (RuntimePlan | undefined)[], options: EvaluateOptions): Promise<(EvaluationResult & { correctChoiceLoss: number; perItem: { correct: number; correctLoss: number }[] })[]> {
    const sequences = items.flatMap((item) => item.choices.map((c) => c.ids));
    const results = await this.runtime.forwardVariants({ sequences, outputs: { loss: true }, plans }, { signal: options.signal, onProgress: options.onForwardProgress });
    options.onProgress?.(items.length, items.length);
    return results.map((result) => {
      let correct = 0;
      let correctLoss = 0;
      let correctTokens = 0;
      let index = 0;
      const perItem: { correct: number; correctLoss: number }[] = [];
      for (const item of items) {
        let itemLoss = 0;
        let best = -1;
        let bestScore = -Infinity;
        item.choices.forEach((choice, c) => {
          const score = choiceLogLikelihood(result.sequences[index + c].loss!, choice.start);
          if (score > bestScore) {
            bestScore = score;
            best = c;
          }
          if (c === item.label) {
            itemLoss = -score;
            correctTokens += choice.ids.length - choice.start;
          }
        });
        correctLoss += itemLoss;
        if (best === item.label) correct++;
        perItem.push({ correct: best === item.label ? 1 : 0, correctLoss: itemLoss });
        index += item.choices.length;
      }
      return { values: { accuracy: correct / items.length }, samples: items.length, tokens: correctTokens, correctChoiceLoss: correctTokens > 0 ? correctLoss / correctTokens : 0, perItem };
    });
  }
}

/** Consecutive groups of sequences with at most `maxTokens` tokens each (a longer sequence goes alone). */
export function chunkByTokens(sequences: Int32Array[], maxTokens: number): Int32Array[][] {
  const chunks: Int32Array[][] = [];
  let current: Int32Array[] = [];
  let tokens = 0;
  for (const sequence of sequences) {
    if (current.length > 0 && tokens + sequence.length > maxTokens) {
      chunks.push(current);
      current = [];
      tokens = 0;
    }
    current.push(sequence);
    tokens += sequence.length;
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}

/** The runtime's AbortError and a fired signal both become the one CancelledError users see. */
async function cancellable<T>(signal: AbortSignal | undefined, work: () => Promise<T>): Promise<T> {
  if (signal?.aborted) throw new CancelledError('Evaluation cancelled.');
  try {
    return await work();
  } catch (error) {
    if (error instanceof ForwardCancelledError || (error as Error)?.name === 'AbortError' || signal?.aborted) throw new CancelledError('Evaluation cancelled.');
    throw error;
  }
}
