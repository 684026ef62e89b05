import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { readRecords, type DatasetRecord } from '../../../server/src/datasets/records';
import { histogram, summarizeDataset } from '../../../server/src/datasets/summarize';
import { datasetFormatOf } from '../../../server/src/datasets/format';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-datasets-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function write(name: string, content: string | Buffer): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, content);
  return file;
}

async function collect(file: string): Promise<DatasetRecord[]> {
  const records: DatasetRecord[] = [];
  for await (const record of readRecords(file, datasetFormatOf(file))) records.push(record);
  return records;
}

describe('dataset records', () => {
  it('reads JSONL, skipping blank lines and flagging broken ones with their line numbers', async () => {
    const records = await collect(write('a.jsonl', '{"text":"x"}\r\n\n{"text":\n{"text":"é"}\n'));
    assert.deepEqual(records.map((r) => r.line), [1, 3, 4]);
    assert.deepEqual(records[0].value, { text: 'x' });
    assert.match(records[1].error ?? '', /invalid JSON/);
    assert.deepEqual(records[2].value, { text: 'é' });
    assert.equal(records[2].bytes, Buffer.byteLength('{"text":"é"}'));
  });

  it('flags non-UTF-8 lines instead of decoding them to replacement characters', async () => {
    const records = await collect(write('bin.txt', Buffer.from([0x68, 0x69, 0x0a, 0xff, 0xfe, 0x00, 0x0a])));
    assert.equal(records[0].value, 'hi');
    assert.match(records[1].error ?? '', /UTF-8/);
  });

  it('parses CSV with quoted commas, doubled quotes and fields that span lines', async () => {
    const records = await collect(write('a.csv', 'prompt,answer\n"a, b","say ""hi"""\n"two\nlines",x\nbad\n'));
    assert.deepEqual(records[0].value, { prompt: 'a, b', answer: 'say "hi"' });
    assert.deepEqual(records[1].value, { prompt: 'two\nlines', answer: 'x' });
    assert.equal(records[1].line, 3);
    assert.match(records[2].error ?? '', /expected 2 fields, found 1/);
  });

  it('reads JSON arrays and {"data": [...]} objects, and refuses other shapes', async () => {
    assert.deepEqual((await collect(write('a.json', '[{"text":"a"},{"text":"b"}]'))).map((r) => r.value), [{ text: 'a' }, { text: 'b' }]);
    assert.deepEqual((await collect(write('b.json', '{"data":["x"]}'))).map((r) => r.value), ['x']);
    await assert.rejects(collect(write('c.json', '{"rows":[]}')), /JSON array of records/);
    await assert.rejects(collect(write('d.json', '[1,')), /not valid JSON/);
  });

  it('refuses pickle and unknown formats with a reason', () => {
    assert.throws(() => datasetFormatOf('x.pt'), /never loads pickle/);
    assert.throws(() => datasetFormatOf('x.xlsx'), /unsupported dataset format "\.xlsx".*\.jsonl/);
  });
});

describe('dataset summary', () => {
  it('bins row sizes into equal-width buckets', () => {
    assert.deepEqual(histogram([1, 2, 3, 10], 3), { edges: [1, 5, 9, 13], counts: [3, 0, 1] });
    assert.deepEqual(histogram([7, 7], 4), { edges: [7, 8], counts: [2] });
    assert.deepEqual(histogram([], 4), { edges: [0, 0], counts: [0] });
  });

  it('counts rows, bytes and malformed rows', async () => {
    const file = write('s.jsonl', '{"a":1}\n{"a":22}\n{oops}\n');
    const summary = await summarizeDataset(file);
    assert.equal(summary.rows, 2);
    assert.equal(summary.bytes, 8 + 9 + 7);
    assert.equal(summary.malformedRows, 1);
    assert.deepEqual(summary.firstMalformedLines, [3]);
  });
});
