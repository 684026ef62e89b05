import { parseByteSize } from '../export';
import type { RuntimeSettings } from '../profile/run/runtimePool';

/**
 * The `moeStudio.memoryBudget` and `moeStudio.precision` settings as the runtime pool takes them, checked
 * where they enter: a value that is not a size or a precision is named in the log and the default used.
 */
export function runtimeSettings(section: { memoryBudget?: unknown; precision?: unknown }, warn: (message: string) => void): Pick<RuntimeSettings, 'memoryBudget' | 'precision'> {
  const text = typeof section.memoryBudget === 'string' ? section.memoryBudget.trim() : '';
  const memoryBudget = text === '' ? undefined : parseByteSize(text);
  if (text !== '' && memoryBudget === undefined) warn(`moeStudio.memoryBudget "${text}" is not a size like 6GB or 6000MB; using the default (half the RAM minus 1 GB).`);
  const precision = section.precision === 'int8' ? 'int8' : 'fp32';
  if (section.precision !== undefined && section.precision !== 'int8' && section.precision !== 'fp32') warn(`moeStudio.precision "${String(section.precision)}" is fp32 or int8; using fp32.`);
  return { memoryBudget, precision };
}
