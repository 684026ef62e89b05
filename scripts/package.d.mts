export const repoRoot: string;
export const VSIX_TARGET: string;
export const vsixPath: string;
export function packageExtension(options?: { build?: boolean; log?: (line: string) => void }): string;
