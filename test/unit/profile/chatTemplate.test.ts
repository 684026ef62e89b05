import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadChatTemplate } from '../../../server/src/profile/chatTemplate';
import { profileDataset, RuntimePool } from '../../../server/src/profile/run';
import { rowText } from '../../../server/src/profile/textField';
import { writeRandomCheckpoint } from '../../support/randomCheckpoint';

/** Mixtral-Instruct's template, as its tokenizer_config.json has it (roles must alternate user/assistant). */
const MIXTRAL_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}" +
  "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% endif %}{% endfor %}";

const CHAT = { kind: 'chat' as const, field: 'messages' };

describe('chat rows under the model\'s chat template', () => {
  let dir: string;
  const runtimes = new RuntimePool();

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-chat-template-'));
  });

  after(async () => {
    await runtimes.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const modelWith = (name: string, config: Record<string, unknown> | undefined) => {
    const folder = path.join(dir, name);
    fs.mkdirSync(folder, { recursive: true });
    if (config) fs.writeFileSync(path.join(folder, 'tokenizer_config.json'), JSON.stringify(config));
    return folder;
  };

  it('renders {role, content} and ShareGPT rows as transformers\' apply_chat_template would', async () => {
    const chat = await loadChatTemplate(modelWith('mixtral', { chat_template: MIXTRAL_TEMPLATE, bos_token: '<s>', eos_token: { content: '</s>', lstrip: false } }));
    assert.ok(chat);
    const row = { messages: [{ role: 'user', content: 'What is 2+2?' }, { role: 'assistant', content: '4' }] };
    assert.equal(rowText(row, CHAT, 1, chat), '<s>[INST] What is 2+2? [/INST]4</s>');
    const shareGpt = { conversations: [{ from: 'human', value: 'Hi' }, { from: 'gpt', value: 'Hello' }] };
    assert.equal(rowText(shareGpt, { kind: 'chat', field: 'conversations' }, 2, chat), '<s>[INST] Hi [/INST]Hello</s>');
    // Without a template: the plain rendering, speakers as written.
    assert.equal(rowText(shareGpt, { kind: 'chat', field: 'conversations' }, 2), '<|human|>\nHi\n<|gpt|>\nHello\n');
  });

  it('names the row when the template refuses it, and picks the default of named templates', async () => {
    const chat = await loadChatTemplate(modelWith('named', { chat_template: [{ name: 'tool_use', template: 'TOOLS' }, { name: 'default', template: MIXTRAL_TEMPLATE }], bos_token: '<s>', eos_token: '</s>' }));
    const twoUsers = { messages: [{ role: 'user', content: 'a' }, { role: 'user', content: 'b' }] };
    assert.throws(() => rowText(twoUsers, CHAT, 7, chat), /line 7: the model's chat template refused this conversation: .*roles must alternate/);
    assert.equal(await loadChatTemplate(modelWith('none', { bos_token: '<s>' })), undefined);
    assert.equal(await loadChatTemplate(modelWith('no-config', undefined)), undefined);
  });

  it('profiles chat data through the model\'s template and records which rendering was used', async () => {
    const folder = path.join(dir, 'checkpoint');
    await writeRandomCheckpoint(folder, { architecture: 'MixtralForCausalLM', numLayers: 1, numExperts: 4, topK: 2, seed: 2 });
    const data = path.join(dir, 'chat.jsonl');
    fs.writeFileSync(data, [0, 1, 2].map((i) => JSON.stringify({ messages: [{ role: 'user', content: `question ${i}` }, { role: 'assistant', content: `answer ${i}` }] })).join('\n') + '\n');
    const profile = (workspace: string) => profileDataset({ datasetFile: data, modelFolder: folder, field: CHAT, workspaceFolder: workspace, settings: { threads: 1 }, runtimes, force: true });
    const plain = await profile(fs.mkdtempSync(path.join(dir, 'ws-')));
    assert.equal(plain.profile.dataset.chatTemplate, 'plain');

    const configFile = path.join(folder, 'tokenizer_config.json');
    const config = fs.existsSync(configFile) ? JSON.parse(fs.readFileSync(configFile, 'utf8')) : {};
    fs.writeFileSync(configFile, JSON.stringify({ ...config, chat_template: MIXTRAL_TEMPLATE, bos_token: '<s>', eos_token: '</s>' }));
    await runtimes.close();
    const templated = await profile(fs.mkdtempSync(path.join(dir, 'ws-')));
    assert.equal(templated.profile.dataset.chatTemplate, 'model');
    // The model's rendering ("<s>[INST] question 0 [/INST]answer 0</s>") is other text than the plain one, so other tokens.
    assert.notEqual(templated.profile.dataset.tokens, plain.profile.dataset.tokens);
    assert.notEqual(templated.profile.cacheKey, plain.profile.cacheKey);
  });
});
