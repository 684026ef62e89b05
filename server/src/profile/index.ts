/** The profile stage: routing statistics from runtime captures, the profile file, comparisons, text fields. */
export type * from './types';
export { compareProfiles, jensenShannon } from './compare';
export {
  buildProfile, defaultProfilePath, fileSha256, formatProfile, loadCurrentProfile, loadProfile, parseProfile, profileCacheKey,
  ProfileFileError, PROFILE_SCHEMA, PROFILE_VERSION, saveProfile, validateProfile, type ProfileInputs,
} from './profileFile';
export { Profiler, type ProfileResult, type ProfilerOptions, type ProfilerState } from './profiler';
export { DEFAULT_GATING_THRESHOLDS, LayerAccumulator, RoutingStatistics, type LayerAccumulatorState, type LayerRouting } from './statistics';
export { detectTextField, fieldLabel, rowText, type FieldCandidate, type FieldDetection } from './textField';
export { TokenRecorder, type SequenceTokens } from './tokenRecords';
