/**
 * The CLI's one progress line: what is being done, how far (done of total), the rate and the time
 * left, as the extension's progress notification shows them. On a terminal the line is rewritten in
 * place; in a log (stderr not a TTY) it is written at most once a second and on every change of step,
 * so a long job neither floods the log nor goes silent.
 */

export interface ProgressUpdate {
  /** The step, e.g. "Plan on code.valid.jsonl". */
  label: string;
  done?: number;
  total?: number;
  /** What is counted, e.g. "sequences" ("" for a bare count). */
  unit?: string;
}

/** "Plan on code.valid.jsonl: 12/70 sequences · 3.4/s · 17 s left" (counts, rate and time left when known). */
export function progressText(update: ProgressUpdate, elapsedMs: number): string {
  const { label, done, total, unit = '' } = update;
  if (done === undefined) return label;
  const counted = `${done.toLocaleString('en-US')}${total !== undefined ? `/${total.toLocaleString('en-US')}` : ''}${unit ? ` ${unit}` : ''}`;
  const parts = [`${label}: ${counted}`];
  const seconds = elapsedMs / 1000;
  if (done > 0 && seconds > 0) {
    const rate = done / seconds;
    parts.push(`${rate >= 10 ? Math.round(rate).toLocaleString('en-US') : rate.toPrecision(2)}/s`);
    if (total !== undefined && total > done) parts.push(`${formatDuration((total - done) / rate)} left`);
  }
  return parts.join(' · ');
}

/**
 * A label for work made of unlike steps (a sweep: plan, then evaluate, per method) whose share done
 * is known: the step, then the whole job's share and the time left at its average pace so far.
 */
export function overallLabel(step: string, fraction: number, elapsedMs: number, what: string): string {
  const share = Math.min(1, Math.max(0, fraction));
  const parts = [step, `${Math.round(100 * share)}% of the ${what}`];
  if (share > 0 && share < 1 && elapsedMs > 0) parts.push(`${formatDuration(((elapsedMs / 1000) * (1 - share)) / share)} left`);
  return parts.join(' · ');
}

export function formatDuration(seconds: number): string {
  if (seconds < 90) return `${Math.max(1, Math.round(seconds))} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

interface Output {
  isTTY?: boolean;
  write(text: string): unknown;
}

export class ProgressLine {
  private label?: string;
  private stepStarted = 0;
  private lastWritten = 0;
  private shown = '';

  constructor(private readonly output: Output = process.stderr, private readonly now: () => number = Date.now) {}

  /** A new label starts a new step: its rate and time left are measured from then. */
  update(update: ProgressUpdate): void {
    const now = this.now();
    const newStep = update.label !== this.label;
    if (newStep) {
      this.label = update.label;
      this.stepStarted = now;
    }
    const text = progressText(update, now - this.stepStarted);
    if (this.output.isTTY) {
      this.output.write(`\r${text}\x1b[K`);
      this.shown = text;
    } else if (newStep || now - this.lastWritten >= 1000 || (update.total !== undefined && update.done === update.total)) {
      this.output.write(`${text}\n`);
      this.lastWritten = now;
    }
  }

  /** Ends the line (a terminal's cursor goes to the next line), optionally with a closing message. */
  finish(message?: string): void {
    if (this.output.isTTY && this.shown) this.output.write(message ? `\r${message}\x1b[K\n` : '\n');
    else if (message) this.output.write(`${message}\n`);
    this.shown = '';
    this.label = undefined;
  }
}
