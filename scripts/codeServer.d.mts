import type { ChildProcess } from 'node:child_process';

export const CODE_SERVER_VERSION: string;
export const SYSTEM_PACKAGES: Record<'chromium' | 'ripgrep' | 'krb5' | 'compiler' | 'python', { file: string; apt: string }>;
export function cacheRoot(): string;
export function codeServerDir(): string;
export function isCodeServerInstalled(): boolean;
export function ensureSystemPackages(names: Array<keyof typeof SYSTEM_PACKAGES>, log?: (line: string) => void): Promise<void>;
export function ensureCodeServer(log?: (line: string) => void): Promise<string>;
export interface ProfileDirs {
  userDataDir: string;
  extensionsDir: string;
}
export function installExtension(vsix: string, dirs: ProfileDirs): Promise<string>;
export interface CodeServer {
  url: string;
  port: number;
  process: ChildProcess;
  /** Every line code-server printed so far. */
  output: string[];
  stop(): Promise<void>;
}
export function launchCodeServer(
  options: ProfileDirs & { folder: string; port?: number; log?: (line: string) => void; timeoutMs?: number },
): Promise<CodeServer>;
export function findFreePort(preferred?: number): Promise<number>;
/** Runs body while holding a cross-process lock (a folder); a lock whose owner died is taken over. */
export function withLock<T>(lockDir: string, body: () => Promise<T>): Promise<T>;
