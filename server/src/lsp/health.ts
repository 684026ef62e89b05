import type { Connection } from 'vscode-languageserver/node';
import { HealthNotification, type HealthParams } from '../../../common/protocol';

/**
 * The server's health as the status bar shows it. Busy work nests: the item stays busy until the
 * last piece of work ends, and shows the most recent one's message.
 */
export class Health {
  private readonly busy: string[] = [];
  private base: HealthParams = { state: 'starting', message: 'Starting' };

  constructor(private readonly connection: Connection) {}

  ready(message = 'Ready'): void {
    this.base = { state: 'ready', message };
    this.publish();
  }

  error(message: string, detail?: string): void {
    this.base = { state: 'error', message, detail };
    this.publish();
  }

  /** Marks the server busy until the returned function is called. */
  beginBusy(message: string): () => void {
    this.busy.push(message);
    this.publish();
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.busy.splice(this.busy.indexOf(message), 1);
      this.publish();
    };
  }

  private publish(): void {
    const params: HealthParams = this.busy.length > 0
      ? { state: 'busy', message: this.busy[this.busy.length - 1] }
      : this.base;
    void this.connection.sendNotification(HealthNotification.type, params);
  }
}
