/**
 * Chat rows as the model sees them: its own `chat_template` from tokenizer_config.json, rendered with
 * Hugging Face's Jinja implementation for chat templates (@huggingface/jinja, the one transformers.js
 * uses), because an instruct model routes its tokens differently under its own template than under
 * any generic markup. Only a model without a template falls back to `<|role|>\ncontent`.
 */
import { Template } from '@huggingface/jinja';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { UserError, errorMessage } from '../errors';

export interface ChatMessage {
  role: string;
  content: string;
}

/** Which rendering a profile's chat rows went through: the model's template, or the plain fallback. */
export type ChatRendering = 'model' | 'plain';

export interface ChatTemplate {
  render(messages: readonly ChatMessage[]): string;
}

/** The model's chat template, or undefined when tokenizer_config.json has none (or no such file). */
export async function loadChatTemplate(modelFolder: string): Promise<ChatTemplate | undefined> {
  const file = join(modelFolder, 'tokenizer_config.json');
  let config: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(await readFile(file, 'utf8'));
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined;
    config = parsed as Record<string, unknown>;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new UserError(`Cannot read the chat template in ${file}: ${errorMessage(error)}`);
  }
  const source = templateSource(config.chat_template);
  if (source === undefined) return undefined;
  let template: Template;
  try {
    template = new Template(source);
  } catch (error) {
    throw new UserError(`The chat_template in ${file} is not a template MoE Studio can read: ${errorMessage(error)}`);
  }
  const special = { bos_token: tokenText(config.bos_token) ?? '', eos_token: tokenText(config.eos_token) ?? '' };
  return {
    render(messages) {
      try {
        return template.render({ messages, add_generation_prompt: false, ...special });
      } catch (error) {
        // A template's raise_exception (e.g. "roles must alternate") is about the row: the caller names it.
        throw new UserError(`the model's chat template refused this conversation: ${errorMessage(error)}`);
      }
    },
  };
}

/** A string, or transformers' list of named templates (the "default" one, else the first). */
function templateSource(value: unknown): string | undefined {
  if (typeof value === 'string' && value.trim() !== '') return value;
  if (!Array.isArray(value)) return undefined;
  const named = value.filter((entry): entry is { name: string; template: string } => typeof entry?.name === 'string' && typeof entry?.template === 'string');
  return (named.find((entry) => entry.name === 'default') ?? named[0])?.template;
}

/** bos_token / eos_token are the token's text or an AddedToken object. */
function tokenText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  const content = (value as { content?: unknown } | null)?.content;
  return typeof content === 'string' ? content : undefined;
}
