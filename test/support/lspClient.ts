import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  createProtocolConnection,
  InitializeRequest,
  InitializedNotification,
  StreamMessageReader,
  StreamMessageWriter,
  type ProtocolConnection,
} from 'vscode-languageserver-protocol/node';

export const repoRoot = path.resolve(__dirname, '../..');

/** The bundled server (dist/server.js) over stdio, as any LSP client would start it. */
export interface ServerUnderTest {
  connection: ProtocolConnection;
  process: ChildProcess;
  stderr: () => string;
  stop(): Promise<void>;
}

export async function startServer(initializationOptions: Record<string, unknown> = { trusted: true }, workspaceFolders?: string[]): Promise<ServerUnderTest> {
  const child = spawn(process.execPath, [path.join(repoRoot, 'dist/server.js'), '--stdio'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk) => (stderr += chunk));
  const connection = createProtocolConnection(new StreamMessageReader(child.stdout!), new StreamMessageWriter(child.stdin!));
  connection.listen();
  await connection.sendRequest(InitializeRequest.type, {
    processId: process.pid,
    rootUri: null,
    capabilities: {},
    initializationOptions,
    ...(workspaceFolders ? { workspaceFolders: workspaceFolders.map((folder) => ({ uri: pathToFileURL(folder).toString(), name: path.basename(folder) })) } : {}),
  });
  return {
    connection,
    process: child,
    stderr: () => stderr,
    async stop() {
      connection.dispose();
      child.kill();
      await new Promise((resolve) => child.once('exit', resolve));
    },
  };
}

export function sendInitialized(server: ServerUnderTest): void {
  void server.connection.sendNotification(InitializedNotification.type, {});
}

/** Resolves with the first notification of `method` whose params pass `accept`. */
export function nextNotification<P>(server: ServerUnderTest, type: { method: string }, accept: (params: P) => boolean = () => true, timeoutMs = 10_000): Promise<P> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${type.method} notification within ${timeoutMs} ms; server stderr:\n${server.stderr()}`)), timeoutMs);
    const subscription = server.connection.onNotification(type.method, (params: P) => {
      if (!accept(params)) return;
      clearTimeout(timer);
      subscription.dispose();
      resolve(params);
    });
  });
}
