/**
 * PyTorch eager as the bench's baseline: tools/bench-torch/torch_forward.py run at its best on this machine
 * (OpenMP wait policy and OpenBLAS kernels, see timeTorch). Shared by runtime.bench.ts and realShape.bench.ts.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export const PYTHON = '/usr/bin/python3';

export function hasTorch(): boolean {
  return spawnSync(PYTHON, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;
}

export interface TorchTiming {
  median_s: number;
  mean_loss: number;
  policy: string;
  /** OpenBLAS's kernels in the timed run, and whether OpenBLAS picked them or OPENBLAS_CORETYPE did. */
  blas: string;
}

/**
 * PyTorch's time, at its best. Two environment settings change it a lot on this kind of VM:
 * - OpenMP's wait policy, with more than one thread: by default worker threads spin between parallel regions,
 *   and on a 2-vCPU VM that often makes PyTorch's 2-thread forward up to three times slower than its 1-thread
 *   one; OMP_WAIT_POLICY=PASSIVE sleeps, as our sessions' threads do. Both are run.
 * - OpenBLAS's kernels: Debian's OpenBLAS 0.3.21 takes an AMD Zen 5 for a Haswell and runs AVX2 kernels;
 *   OPENBLAS_CORETYPE=SkylakeX or Cooperlake gives it AVX-512 ones, which made its demo forward 1.4x and its
 *   wide forward 1.2-1.4x faster (2026-12-01). Where the CPU has AVX-512, `blas.candidates` are tried and the
 *   fastest is kept for the rest of the model's runs (`blas.chosen`).
 * The fastest run is the baseline: a speed-up against a badly configured PyTorch would be its setup's
 * problem, not our runtime's merit.
 */
export function timeTorch(folder: string, tokensFile: string, threads: number, repeats: number, blas: BlasChoice): TorchTiming {
  const script = join(__dirname, '..', 'tools/bench-torch/torch_forward.py');
  const policies = threads > 1 ? ['default', 'PASSIVE'] : ['default'];
  const cores = blas.chosen ? [blas.chosen.core] : blas.candidates;
  const runs = cores.flatMap((core) =>
    policies.map((policy) => {
      const env = { ...process.env, OMP_NUM_THREADS: String(threads), OPENBLAS_NUM_THREADS: String(threads), OPENBLAS_VERBOSE: '2', ...(policy === 'default' ? {} : { OMP_WAIT_POLICY: policy }), ...(core ? { OPENBLAS_CORETYPE: core } : {}) };
      const run = spawnSync(PYTHON, [script, folder, tokensFile, String(threads), String(repeats)], { encoding: 'utf8', env });
      if (run.status !== 0) throw new Error(`torch_forward.py failed: ${run.stderr}`);
      // OPENBLAS_VERBOSE=2 makes OpenBLAS name the kernels it picked ("Core: Haswell").
      const kernels = /Core: (\w+)/.exec(run.stdout + run.stderr)?.[1] ?? core ?? '?';
      return { ...(JSON.parse(run.stdout.trim().split('\n').pop()!) as { median_s: number; mean_loss: number }), policy, core, kernels };
    }),
  );
  const best = runs.reduce((fastest, run) => (run.median_s < fastest.median_s ? run : fastest));
  blas.chosen ??= { core: best.core };
  return { median_s: best.median_s, mean_loss: best.mean_loss, policy: best.policy, blas: best.core ? `${best.kernels} (set)` : `${best.kernels} (own pick)` };
}

/** OpenBLAS kernel sets to try (undefined: OpenBLAS's own pick), and the one kept once tried. */
export interface BlasChoice {
  candidates: (string | undefined)[];
  chosen?: { core: string | undefined };
}

export function blasCandidates(): (string | undefined)[] {
  const flags = existsSync('/proc/cpuinfo') ? readFileSync('/proc/cpuinfo', 'utf8') : '';
  return /\bavx512f\b/.test(flags) ? [undefined, 'SkylakeX', 'Cooperlake'] : [undefined];
}
