/** The plan stage: the plan file, its checks and conversions, and the methods that make plans. */
export * from './planFile';
export { analyseHfExactness } from './hfExactness';
export { oneHotRows, toLayerPlan, toRuntimePlan } from './runtimeConversion';
export { predictSavings } from './savings';
export { withCurrentFigures } from './currentFigures';
export type { ExpertTarget, GatingCurve, LayerStatistics, MoeLayerShape } from './statistics';
export { randomPruning, frequencyPruning, softCountPruning, reapPruning } from './methods/ranking';
export { naeePruning, type LayerErrorFunction, type NaeeOptions } from './methods/naee';
export { uncurlMerging, spectralClusters, UNCURL_SIMILARITIES, type UncurlOptions, type UncurlSimilarity } from './methods/uncurl';
export { eepSearch, pairedDifference, searchRecord, DEFAULT_EEP_PARAMETERS, type EepOptions, type EepParameters, type EepProgress, type EepResult, type EepSearchRecord, type FitnessFunction } from './methods/eep';
export { adaptiveGatingForShare, adaptiveGatingWithinQuality, thresholdForSingleExpertShare, type QualityBoundOptions } from './methods/adaptiveGating';
export { generatePlan, moeLayerShapes, type PlanInputs, type PlanMethod, type PlanOptions } from './generatePlan';
export { heavyMerges, sharesFromCounts, describeHeavyMerge, describeHeavyMerges, type HeavyMerge } from './mergeWarnings';
