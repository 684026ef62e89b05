import type { CancellationToken, Connection, Hover, HoverParams } from 'vscode-languageserver/node';

export type HoverProvider = (params: HoverParams, token: CancellationToken) => Promise<Hover | null> | Hover | null;

/**
 * An LSP connection keeps one handler per method, but dataset documents (token routing) and plan
 * files (expert statistics) both hover. Each feature adds a provider for its own documents; the one
 * registered handler asks them in turn and returns the first answer.
 */
export class HoverProviders {
  private readonly providers: HoverProvider[] = [];

  constructor(connection: Connection) {
    connection.onHover(async (params, token) => {
      for (const provider of this.providers) {
        const hover = await provider(params, token);
        if (hover) return hover;
      }
      return null;
    });
  }

  add(provider: HoverProvider): void {
    this.providers.push(provider);
  }
}
