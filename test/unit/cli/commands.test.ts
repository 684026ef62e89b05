import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { overallLabel, ProgressLine, progressText } from '../../../server/src/cli/progressLine';
import { parsePlan } from '../../../server/src/plan';
import { writeRandomCheckpoint, type RandomCheckpoint } from '../../support/randomCheckpoint';
import { cli } from '../../support/cliInProcess';

describe('CLI commands: arguments are checked before any work', () => {
  let dir: string;
  let checkpoint: RandomCheckpoint;
  let data: string;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-cli-'));
    checkpoint = await writeRandomCheckpoint(path.join(dir, 'model'), { architecture: 'MixtralForCausalLM', numLayers: 2, numExperts: 8, topK: 2, seed: 3 });
    data = path.join(dir, 'data.jsonl');
    fs.writeFileSync(data, Array.from({ length: 6 }, (_, i) => JSON.stringify({ text: `sample ${i} ${'abc '.repeat(5 + i)}` })).join('\n') + '\n');
  });

  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('profile prints routing entropy / ln E per layer, as the dashboard plots it', async () => {
    const out = path.join(dir, 'data.profile.json');
    const profiled = await cli('profile', '--model', checkpoint.folder, '--data', data, '--threads', '1', '--out', out);
    assert.equal(profiled.code, 0, profiled.err);
    assert.match(profiled.out, /entropy\/ln E/);
    const saved = JSON.parse(fs.readFileSync(out, 'utf8')) as { layers: { layer: number; meanEntropy: number }[] };
    for (const layer of saved.layers) {
      const row = new RegExp(`^\\s*${layer.layer}\\s.*\\s(\\d\\.\\d{3})\\s+\\S+\\s+\\S+$`, 'm').exec(profiled.out);
      assert.ok(row, `no row for layer ${layer.layer}:\n${profiled.out}`);
      assert.equal(row[1], (layer.meanEntropy / Math.log(8)).toFixed(3));
    }
  });

  it('refuses an unknown option and lists the options the command takes', async () => {
    const { code, err } = await cli('export', '--plan', 'p.moeplan.json', '--out', path.join(dir, 'x'), '--force');
    assert.equal(code, 2);
    assert.match(err, /unknown option --force; this command takes --plan, --out, --format, --overwrite, --shard-size/);
    assert.ok(!fs.existsSync(path.join(dir, 'x')));
  });

  it('answers `<command> --help` with that command\'s usage, not a missing option', async () => {
    const { code, out } = await cli('profile', '--help');
    assert.equal(code, 0);
    assert.match(out, /^Usage: moe-studio profile --model DIR --data FILE/);
    assert.doesNotMatch(out, /missing/);
    assert.match((await cli('help', 'export')).out, /^Usage: moe-studio export/);
  });

  it('does not take an inherited property for a command', async () => {
    const { code, err } = await cli('constructor');
    assert.equal(code, 2);
    assert.match(err, /unknown command "constructor"/);
  });

  it('refuses --out x.onnx with --format huggingface as a contradiction', async () => {
    const { code, err } = await cli('export', '--plan', path.join(dir, 'none.moeplan.json'), '--out', path.join(dir, 'x.onnx'), '--format', 'huggingface');
    assert.equal(code, 2);
    assert.match(err, /ends in \.onnx but --format is huggingface/);
  });

  it('refuses plan --keep 9 on an 8-expert model before reading the calibration data', async () => {
    // The calibration file does not exist: reaching it would be a different error.
    const { code, err } = await cli('plan', '--model', checkpoint.folder, '--method', 'frequency', '--keep', '9', '--calibration', path.join(dir, 'missing.jsonl'), '--out', path.join(dir, 'nine.moeplan.json'));
    assert.equal(code, 1);
    assert.match(err, /has 8 experts, so a plan keeps 1 to 8 of them, not 9/);
    assert.doesNotMatch(err, /\n\s+at /);
  });

  it('plan → evaluate records the results in the plan; export picks ONNX by the .onnx ending and names --overwrite', async () => {
    const planFile = path.join(dir, 'keep4.moeplan.json');
    const planned = await cli('plan', '--model', checkpoint.folder, '--method', 'frequency', '--keep', '4', '--calibration', data, '--threads', '1', '--out', planFile);
    assert.equal(planned.code, 0, planned.err);

    const evaluated = await cli('evaluate', '--plan', planFile, '--data', data, '--threads', '1');
    assert.equal(evaluated.code, 0, evaluated.err);
    assert.match(evaluated.err, /Plan on data\.jsonl: \d+\/6 sequences/);
    const plan = JSON.parse(fs.readFileSync(planFile, 'utf8'));
    const metrics = plan.evaluations.map((e: { metric: string }) => e.metric).sort();
    assert.deepEqual(metrics, ['kl', 'loss', 'perplexity', 'top1Agreement']);
    const loss = plan.evaluations.find((e: { metric: string }) => e.metric === 'loss');
    assert.match(evaluated.out, new RegExp(`loss\\s+${loss.baseline.toFixed(4)}\\s+${loss.value.toFixed(4)}`));
    assert.ok(parsePlan(fs.readFileSync(planFile, 'utf8'), checkpoint.spec).valid);

    const onnx = path.join(dir, 'pruned.onnx');
    const exported = await cli('export', '--plan', planFile, '--out', onnx);
    assert.equal(exported.code, 0, exported.err);
    assert.ok(fs.statSync(onnx).isFile());
    const again = await cli('export', '--plan', planFile, '--out', onnx);
    assert.equal(again.code, 1);
    assert.match(again.err, /already exists\. Choose another --out, or pass --overwrite to replace it\./);
  });
});

describe('CLI progress line', () => {
  it('shows counts, the rate and the time left', () => {
    assert.equal(progressText({ label: 'Plan on a.jsonl', done: 10, total: 70, unit: 'sequences' }, 5000), 'Plan on a.jsonl: 10/70 sequences · 2.0/s · 30 s left');
    assert.equal(progressText({ label: 'Reading a.jsonl' }, 5000), 'Reading a.jsonl');
    assert.equal(progressText({ label: 'x', done: 1200, total: 1200 }, 2000), 'x: 1,200/1,200 · 600/s');
  });

  it("gives a sweep's steps the whole sweep's share and time left at its pace so far", () => {
    assert.equal(overallLabel('Sweep 2/8 of reap (1/3 methods): planning 6 experts', 0.25, 20_000, 'sweep'), 'Sweep 2/8 of reap (1/3 methods): planning 6 experts · 25% of the sweep · 60 s left');
    assert.equal(overallLabel('Full model', 0, 1_000, 'sweep'), 'Full model · 0% of the sweep');
    assert.equal(overallLabel('x', 0.5, 3_600_000, 'sweep'), 'x · 50% of the sweep · 60 min left');
  });

  it('rewrites one line on a terminal and writes at most one line a second in a log', () => {
    let now = 0;
    const terminal: string[] = [];
    const line = new ProgressLine({ isTTY: true, write: (text) => terminal.push(text) }, () => now);
    for (let done = 1; done <= 3; done++) {
      now += 100;
      line.update({ label: 'step', done, total: 3 });
    }
    line.finish();
    assert.equal(terminal.filter((text) => text.includes('\n')).length, 1);
    assert.ok(terminal.slice(0, 3).every((text) => text.startsWith('\r')));

    now = 0;
    const log: string[] = [];
    const logged = new ProgressLine({ isTTY: false, write: (text) => log.push(text) }, () => now);
    for (let done = 1; done <= 30; done++) {
      now += 100;
      logged.update({ label: 'step', done, total: 30 });
    }
    logged.update({ label: 'next step' });
    assert.equal(log.length, 1 + 2 + 1 + 1); // the first, one a second after it, the last count, and the new step
    assert.match(log[3], /^step: 30\/30/);
  });
});
