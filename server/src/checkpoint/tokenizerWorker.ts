/**
 * The worker side of `SandboxedTokenizer`: loads tokenizer.json here and tokenises rows on request,
 * one reply per row, so the main thread can tell a slow row from a stuck one and kill this thread
 * when a tokenizer's regex backtracks without end.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { serializeError } from '../runtime/runtimeProtocol';
import { loadTokenizer } from './tokenizer';
import { tokenizeRow } from './tokenizeRow';
import type { TokenizerWorkerReply, TokenizerWorkerRequest } from './sandboxedTokenizer';

const { folder, config } = workerData as { folder: string; config: Record<string, unknown> };
const port = parentPort!;
const post = (reply: TokenizerWorkerReply, transfer: ArrayBuffer[] = []) => port.postMessage(reply, transfer);

void loadTokenizer(folder, config).then(
  (tokenizer) => {
    post({ type: 'ready', bosTokenId: tokenizer.bosTokenId, eosTokenId: tokenizer.eosTokenId });
    port.on('message', ({ id, rows }: TokenizerWorkerRequest) => {
      for (const [index, row] of rows.entries()) {
        try {
          const result = tokenizeRow(tokenizer, row);
          post({ type: 'row', id, index, row: result }, [result.ids.buffer as ArrayBuffer]);
        } catch (error) {
          post({ type: 'error', id, error: serializeError(error) });
          return;
        }
      }
    });
  },
  (error: unknown) => post({ type: 'error', error: serializeError(error) }),
);
