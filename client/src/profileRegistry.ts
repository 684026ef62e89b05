import type * as vscode from 'vscode';

/** The profile file last produced or reused for each dataset in this window (compare mode, decorations). */
const latestProfiles = new Map<string, string>();

export function rememberProfile(dataset: vscode.Uri, profilePath: string): void {
  latestProfiles.set(dataset.toString(), profilePath);
}

export function profileOf(dataset: vscode.Uri): string | undefined {
  return latestProfiles.get(dataset.toString());
}
