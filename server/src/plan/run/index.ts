/** Running the plan methods: calibration data in, plan files, previews and sweeps out. */
export { Calibration, DEFAULT_EEP_SAMPLES, heuristicPlans, DEFAULT_NAEE_TOKENS, type CalibrationFile, type CalibrationOptions } from './calibration';
export { generatePlanFile, makePlan, planMethod, planRelativePath, readPlanToResume, type GeneratePlanFileOptions, type PlanRecord, type PlanRequestOptions } from './generatePlanFile';
export { LayerReconstruction } from './layerReconstruction';
export { layerPreview, previewPlanFile } from './previewPlan';
export { captureCalibration, toPlanStatistics, type CalibrationCapture } from './statistics';
export { runSweep, type SweepOptions } from './sweep';
