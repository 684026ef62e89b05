import type * as vscode from 'vscode';

/** The profile file last produced or reused for each dataset in this window (compare mode, decorations), in the order profiled. */
const latestProfiles = new Map<string, string>();

export function rememberProfile(dataset: vscode.Uri, profilePath: string): void {
  // Re-inserted, so the map's last key is the dataset profiled last.
  latestProfiles.delete(dataset.toString());
  latestProfiles.set(dataset.toString(), profilePath);
}

/** The dataset profiled last in this window (a URI string): the wizard offers it first as calibration data. */
export function lastProfiledDataset(): string | undefined {
  return [...latestProfiles.keys()].pop();
}

export function profileOf(dataset: vscode.Uri): string | undefined {
  return latestProfiles.get(dataset.toString());
}
