/** The evaluate stage: quality of a model under a plan (loss, perplexity, KL, agreement, multiple-choice accuracy). */
export { baselineCacheKey, baselineFolder, cachedBaseline, clearBaselineMemory, type BaselineKey } from './baselines';
export { CHOICE_METRICS, Evaluator, TEXT_METRICS, chunkByTokens, type EvaluateOptions, type EvaluationResult, type MetricValues } from './evaluator';
export { baselineFor, evaluatePlanFile, loadCheckedPlan, loadDataset, runtimePlanFor, type DatasetSpec, type EvaluatePlanFileOptions, type EvaluatePlanFileResult, type EvaluationRun } from './evaluatePlan';
export { argmax, choiceLogLikelihood, klDivergence, logSumExp } from './metrics';
export { DEFAULT_SEQUENCE_LENGTH, isChoiceRow, loadSamples, type ChoiceItem, type EvaluationSamples, type LoadedSamples, type SampleOptions } from './samples';
