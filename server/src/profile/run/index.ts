/** Running a profile: dataset in, profile file out; and where its tokens sit in the dataset file. */
export { DEFAULT_PROFILE_SETTINGS, profileDataset, profileProgressMessage, sharedRuntimes, streamedSecondsLeft, type ProfileDatasetOptions, type ProfileDatasetResult, type ProfileProgress, type ProfileRunSettings } from './profileDataset';
export { modelIdentity, profileModel, relativeToWorkspace, type ModelIdentity } from './modelIdentity';
export { defaultThreads, RuntimePool, type OpenModel } from './runtimePool';
export { jsonFieldString, rowColumns, rowLines, type DecodedString, type RowColumns } from './sourcePositions';
