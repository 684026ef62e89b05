import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UserError } from '../../../server/src/errors';
import { compareProfiles, jensenShannon } from '../../../server/src/profile/compare';
import { detectTextField, rowText } from '../../../server/src/profile/textField';
import type { LayerStatistics } from '../../../server/src/profile/types';

describe('text field detection', () => {
  it('reads plain strings (text files) as they are', () => {
    const detection = detectTextField(['def f():', 'return 1']);
    assert.equal(detection.confident, true);
    assert.deepEqual(detection.candidates[0].spec, { kind: 'string' });
    assert.equal(rowText('def f():', { kind: 'string' }, 1), 'def f():');
  });

  it('is confident about `text` and `content`', () => {
    const text = detectTextField([{ text: 'a long body', id: 1, title: 'x' }, { text: 'b', id: 2, title: 'y' }]);
    assert.equal(text.confident, true);
    assert.deepEqual(text.candidates[0].spec, { kind: 'field', field: 'text' });
    assert.deepEqual(text.candidates[1], { spec: { kind: 'field', field: 'title' }, label: 'title', confidence: 0.5 });
    assert.deepEqual(detectTextField([{ content: 'x' }]).candidates[0].spec, { kind: 'field', field: 'content' });
  });

  it('joins prompt + completion directly and question + answer with a newline', () => {
    const pairs = detectTextField([{ prompt: 'Q: 2+2?', completion: ' 4' }]);
    assert.equal(pairs.confident, true);
    assert.equal(pairs.candidates[0].label, 'prompt + completion');
    assert.equal(rowText({ prompt: 'Q: 2+2?', completion: ' 4' }, pairs.candidates[0].spec, 1), 'Q: 2+2? 4');
    const qa = detectTextField([{ question: 'Why?', answer: 'Because.' }]).candidates[0].spec;
    assert.equal(rowText({ question: 'Why?', answer: 'Because.' }, qa, 1), 'Why?\nBecause.');
  });

  it('joins chat messages with role markers, {role, content} and ShareGPT {from, value}', () => {
    const chat = [{ messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'hello' }] }];
    const detection = detectTextField(chat);
    assert.equal(detection.confident, true);
    assert.deepEqual(detection.candidates[0].spec, { kind: 'chat', field: 'messages' });
    assert.equal(rowText(chat[0], detection.candidates[0].spec, 1), '<|user|>\nhi\n<|assistant|>\nhello\n');
    const shareGpt = { conversations: [{ from: 'human', value: 'q' }] };
    assert.equal(rowText(shareGpt, detectTextField([shareGpt]).candidates[0].spec, 1), '<|human|>\nq\n');
  });

  it('asks when two named candidates fit, or only an unnamed field does', () => {
    const both = detectTextField([{ text: 'whole', prompt: 'p', completion: 'c' }]);
    assert.equal(both.confident, false);
    assert.deepEqual(both.candidates.slice(0, 2).map((c) => c.label).sort(), ['prompt + completion', 'text']);
    const unnamed = detectTextField([{ body: 'some code', lang: 'py' }]);
    assert.equal(unnamed.confident, false);
    assert.deepEqual(unnamed.candidates.map((c) => c.label), ['body', 'lang']);
  });

  it('weighs candidates by the share of rows they fit', () => {
    const detection = detectTextField([{ text: 'a' }, { text: 'b' }, { text: 'c' }, { body: 'd' }]);
    assert.equal(detection.candidates[0].confidence, 0.75);
    assert.equal(detection.confident, false);
    assert.deepEqual(detectTextField([]), { candidates: [], confident: false });
    assert.deepEqual(detectTextField([{ n: 1 }]).candidates, []);
  });

  it('names the fields a row does have when the chosen one is missing', () => {
    const fails = (row: unknown, spec: Parameters<typeof rowText>[1], message: RegExp) =>
      assert.throws(() => rowText(row, spec, 12), (error: unknown) => error instanceof UserError && message.test(error.message));
    fails({ body: 'x', id: 3 }, { kind: 'field', field: 'text' }, /^line 12: no field "text"; its fields are "body", "id"$/);
    fails({ prompt: 'x' }, { kind: 'pair', fields: ['prompt', 'completion'], separator: '' }, /^line 12: no field "completion"; its fields are "prompt"$/);
    fails({ text: 42 }, { kind: 'field', field: 'text' }, /^line 12: field "text" is a number, not text$/);
    fails({ messages: 'hi' }, { kind: 'chat', field: 'messages' }, /^line 12: "messages" is not a list of \{role, content\} messages \(a string\)$/);
    fails(['a'], { kind: 'field', field: 'text' }, /^line 12: expected an object with text, found a list$/);
    fails({ text: 'x' }, { kind: 'string' }, /^line 12: expected a string row, found an object$/);
    assert.equal(rowText({ text: '' }, { kind: 'field', field: 'text' }, 1), '');
  });
});

describe('profile comparison', () => {
  it('computes the Jensen–Shannon divergence in bits', () => {
    // p = (1/2, 1/2, 0), q = (0, 1/2, 1/2): m = (1/4, 1/2, 1/4); KL(p‖m) = ½·log2 2 + ½·log2 1 = ½; same for q → JS = ½.
    assert.equal(jensenShannon([0.5, 0.5, 0], [0, 0.5, 0.5]), 0.5);
    assert.equal(jensenShannon([1, 0], [0, 1]), 1);
    assert.equal(jensenShannon([0.3, 0.7], [0.3, 0.7]), 0);
    // Counts are normalised: (3, 1) against (1, 1) is (3/4, 1/4) against (1/2, 1/2).
    const m = [5 / 8, 3 / 8];
    const expected = 0.5 * (0.75 * Math.log2(0.75 / m[0]) + 0.25 * Math.log2(0.25 / m[1])) + 0.5 * (0.5 * Math.log2(0.5 / m[0]) + 0.5 * Math.log2(0.5 / m[1]));
    assert.ok(Math.abs(jensenShannon([3, 1], [1, 1]) - expected) < 1e-15);
    assert.equal(jensenShannon([0, 0], [0, 0]), 0);
    assert.throws(() => jensenShannon([1], [1, 0]), /different lengths/);
  });

  it('subtracts usage shares per layer and expert, and lists layers it cannot compare', () => {
    const layer = (index: number, usageShare: number[]) => ({ layer: index, numExperts: usageShare.length, usageShare }) as LayerStatistics;
    const comparison = compareProfiles(
      { layers: [layer(0, [0.5, 0.5, 0]), layer(1, [0.25, 0.75]), layer(2, [1, 0])] },
      { layers: [layer(0, [0, 0.5, 0.5]), layer(1, [0.5, 0.25, 0.25]), layer(3, [0.5, 0.5])] },
      'code', 'prose',
    );
    assert.deepEqual(comparison.layers, [{ layer: 0, numExperts: 3, shareDifference: [0.5, 0, -0.5], jensenShannon: 0.5 }]);
    assert.deepEqual(comparison.skipped, [
      { layer: 1, reason: '2 experts in code, 3 in prose' },
      { layer: 2, reason: 'not in prose' },
      { layer: 3, reason: 'not in code' },
    ]);
  });
});
