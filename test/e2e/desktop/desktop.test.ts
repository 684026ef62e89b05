// The end-to-end journey in desktop VS Code, through @vscode/test-electron, where a VS Code
// executable is available (VSCODE_EXECUTABLE; on a headless Linux box run it under xvfb-run).
// This machine has no desktop VS Code, so by default it is skipped, loudly: the code-server
// test (../extension.test.ts) covers the same journey in the browser.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { runTests } from '@vscode/test-electron';
import { build } from 'esbuild';
import { repoRoot } from '../../../scripts/package.mjs';
import { freshVsix } from '../../support/vsix';
import { workspaceWithDataset } from '../workspace';

const executable = process.env.VSCODE_EXECUTABLE;

test('profiling a dataset opens the chart in desktop VS Code', { timeout: 600_000 }, async (t) => {
  if (!executable) {
    const rule = '!'.repeat(78);
    console.warn(`\n${rule}\n!! SKIPPED desktop VS Code end-to-end test: set VSCODE_EXECUTABLE to a VS Code binary to run it.\n${rule}\n`);
    t.skip('VSCODE_EXECUTABLE is not set');
    return;
  }
  await freshVsix(); // brings dist/ up to date; the desktop run loads the extension from the repository
  const scratch = await mkdtemp(join(tmpdir(), 'moe-studio-desktop-'));
  try {
    const suite = join(scratch, 'suite.js');
    await build({
      entryPoints: [join(repoRoot, 'test', 'e2e', 'desktop', 'suite.ts')],
      outfile: suite,
      bundle: true,
      platform: 'node',
      format: 'cjs',
      target: 'node20',
      external: ['vscode'],
      logLevel: 'warning',
    });
    const { folder, dataset } = workspaceWithDataset();
    await runTests({
      vscodeExecutablePath: executable,
      extensionDevelopmentPath: repoRoot,
      extensionTestsPath: suite,
      extensionTestsEnv: { MOE_STUDIO_E2E_DATASET: dataset },
      launchArgs: [
        folder,
        '--user-data-dir', join(scratch, 'user-data'),
        '--extensions-dir', join(scratch, 'extensions'),
        '--disable-workspace-trust',
        '--skip-welcome',
        '--skip-release-notes',
      ],
    });
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
});
