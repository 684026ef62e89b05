import { existsSync, readFileSync } from 'node:fs';

/**
 * This process's peak RSS. On Linux, VmHWM of the current address space: getrusage's maxRSS survives exec,
 * so a child of a 2.4 GB bench process reported 2.4 GB before it had loaded anything.
 */
export function peakRssBytes(): number {
  const status = existsSync('/proc/self/status') ? readFileSync('/proc/self/status', 'utf8') : '';
  const kib = /^VmHWM:\s+(\d+) kB/m.exec(status)?.[1];
  return kib ? Number(kib) * 1024 : process.resourceUsage().maxRSS * 1024;
}
