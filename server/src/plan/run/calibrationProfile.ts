/**
 * A generated plan names the profile it was made from (`calibration.profile`), so the plan's hovers
 * show each expert's statistics and its merge warnings have data. When no saved profile of the
 * calibration data matches the model, generation profiles it first, exactly as "Profile experts on
 * this dataset" would (saved to the same default path, reused by later plans and the dashboard), and
 * plans from that profile. Profiles are per dataset file, so only a single text calibration file gets
 * one; several files, or multiple-choice rows (which a profile does not read), are profiled in memory
 * as before, and their plan names no profile.
 */
import { datasetFormatOf } from '../../datasets/format';
import { readRecords } from '../../datasets/records';
import { isUserError } from '../../errors';
import { isChoiceRow } from '../../evaluate/samples';
import { profileDataset, profileProgressMessage } from '../../profile/run/profileDataset';
import type { ModelIdentity } from '../../profile/run/modelIdentity';
import type { RuntimePool } from '../../profile/run/runtimePool';
import { detectTextField } from '../../profile/textField';
import type { FieldSpec } from '../../profile/types';
import type { CalibrationFile } from './calibration';

/** Rows looked at to recognise a multiple-choice file or detect the text field, as the profile request does. */
const SAMPLE_ROWS = 200;

export interface CalibrationProfileOptions {
  workspaceFolder?: string;
  /** The calibration's row limit: the profile reads the same rows the plan would. */
  maxRows: number;
  threads?: number;
  runtimes?: RuntimePool;
  signal?: AbortSignal;
  onProgress?: (message: string) => void;
}

/** The saved profile's path, or undefined when this calibration gets none (see above). */
export async function profileCalibration(calibration: CalibrationFile[], identity: ModelIdentity, options: CalibrationProfileOptions): Promise<string | undefined> {
  if (calibration.length !== 1 || !options.workspaceFolder) return undefined;
  const [{ file }] = calibration;
  const field = calibration[0].field ?? (await textFieldOf(file));
  if (!field) return undefined;
  options.onProgress?.('Profiling the calibration data');
  try {
    const result = await profileDataset({
      datasetFile: file,
      modelFolder: identity.folder,
      field,
      workspaceFolder: options.workspaceFolder,
      settings: { maxRows: options.maxRows, ...(options.threads !== undefined ? { threads: options.threads } : {}) },
      runtimes: options.runtimes,
      signal: options.signal,
      onProgress: (progress) => options.onProgress?.(`Profiling the calibration data: ${profileProgressMessage(progress)}`),
    });
    return result.profilePath;
  } catch (error) {
    // The calibration reads the file again and says what is wrong with it; a cancel is a cancel.
    if (options.signal?.aborted || !isUserError(error)) throw error;
    return undefined;
  }
}

/** The field the profile request would detect; undefined for multiple-choice rows or no text at all. */
async function textFieldOf(file: string): Promise<FieldSpec | undefined> {
  const values: unknown[] = [];
  try {
    const format = datasetFormatOf(file);
    for await (const record of readRecords(file, format)) {
      if (record.error !== undefined) continue;
      values.push(record.value);
      if (values.length >= SAMPLE_ROWS) break;
    }
  } catch (error) {
    if (isUserError(error)) return undefined;
    throw error;
  }
  if (values.length === 0 || isChoiceRow(values[0])) return undefined;
  return detectTextField(values).candidates[0]?.spec;
}
