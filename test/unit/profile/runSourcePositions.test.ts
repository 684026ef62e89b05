import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { jsonFieldString, rowColumns, rowLines } from '../../../server/src/profile/run/sourcePositions';

/** The raw slice of `line` that decoded text [start, end) came from. */
function rawOf(line: string, field: string, start: number, end: number): string {
  const [from, to] = rowColumns(line, 'jsonl', { kind: 'field', field }).columns(start, end);
  return line.slice(from, to);
}

describe('source positions of profiled tokens', () => {
  it('decodes a JSONL field and maps every decoded character to its raw columns through escapes', () => {
    const line = String.raw`{"id": 3, "meta": {"text": "no"}, "text": "a\nb \"q\" caf\u00e9 \ud83d\ude00!😀"}`;
    const decoded = jsonFieldString(line, 'text');
    assert.equal(decoded?.text, 'a\nb "q" café 😀!😀');
    assert.equal(decoded!.text, JSON.parse(line).text);
    assert.equal(rawOf(line, 'text', 0, 1), 'a');
    assert.equal(rawOf(line, 'text', 1, 2), String.raw`\n`);
    assert.equal(rawOf(line, 'text', 4, 7), String.raw`\"q\"`);
    assert.equal(rawOf(line, 'text', 8, 12), String.raw`caf\u00e9`);
    // A surrogate pair written as two escapes is two UTF-16 units, each mapping to its escape.
    const emoji = decoded!.text.indexOf('😀');
    assert.equal(rawOf(line, 'text', emoji, emoji + 2), String.raw`\ud83d\ude00`);
    assert.equal(rawOf(line, 'text', emoji + 2, emoji + 3), '!');
    // A literal emoji is two UTF-16 units in both the text and the line.
    assert.equal(rawOf(line, 'text', emoji + 3, emoji + 5), '😀');
    // Offsets at the end map to the closing quote; past it they clamp.
    const [end] = rowColumns(line, 'jsonl', { kind: 'field', field: 'text' }).columns(decoded!.text.length, decoded!.text.length);
    assert.equal(line[end], '"');
    assert.equal(line.slice(end), '"}');
  });

  it('finds the field after nested values and ignores the same key inside them', () => {
    const line = '{"a": [1, {"text": "x"}], "b": null, "c": -1.5e3, "text": "yes"}';
    assert.equal(jsonFieldString(line, 'text')?.text, 'yes');
    assert.equal(jsonFieldString(line, 'missing'), undefined);
    assert.equal(jsonFieldString('{"text": 5}', 'text'), undefined);
    assert.equal(jsonFieldString('not json', 'text'), undefined);
  });

  it('maps text files one to one and falls back to the whole line where there is no exact mapping', () => {
    const txt = rowColumns('hello world', 'txt', { kind: 'string' });
    assert.equal(txt.exact, true);
    assert.deepEqual(txt.columns(6, 11), [6, 11]);
    const pair = rowColumns('{"prompt": "a", "completion": "b"}', 'jsonl', { kind: 'pair', fields: ['prompt', 'completion'], separator: '' });
    assert.equal(pair.exact, false);
    assert.deepEqual(pair.columns(0, 1), [0, 34]);
    const csv = rowColumns('1,hello', 'csv', { kind: 'field', field: 'text' });
    assert.deepEqual(csv.columns(0, 1), [0, 7]);
    assert.equal(rowColumns('"a\\tb"', 'jsonl', { kind: 'string' }).text, 'a\tb');
  });

  it('numbers rows as readRecords does: non-blank lines, malformed ones included', () => {
    assert.deepEqual(rowLines(['{"a":1}', '', '  ', 'broken', '{"a":2}']), [0, 3, 4]);
  });
});
