// Checks that demo/model/tokenizer.json, loaded by @huggingface/tokenizers (the library the
// extension uses), gives exactly the ids of the Python BPE in bpe.py, and that decode round-trips.
// Run from the repository root, after build_corpus.py and bpe.py:
//   /usr/bin/python3 tools/demo-model/bpe.py dump demo/model tools/demo-model/build/tokenizer-check.json
//   node tools/demo-model/check_tokenizer.mjs tools/demo-model/build/tokenizer-check.json
import { readFileSync } from "node:fs";
import { Tokenizer } from "@huggingface/tokenizers";

const casesPath = process.argv[2] ?? "tools/demo-model/build/tokenizer-check.json";
const tokenizer = new Tokenizer(
  JSON.parse(readFileSync("demo/model/tokenizer.json", "utf8")),
  JSON.parse(readFileSync("demo/model/tokenizer_config.json", "utf8")),
);
const cases = JSON.parse(readFileSync(casesPath, "utf8"));
let idMismatches = 0;
let roundTripFailures = 0;
let tokens = 0;
for (const { text, ids } of cases) {
  const got = tokenizer.encode(text).ids;
  tokens += got.length;
  if (JSON.stringify(got) !== JSON.stringify(ids)) {
    idMismatches++;
    if (idMismatches <= 5) console.log("ids differ for", JSON.stringify(text.slice(0, 80)), got.slice(0, 20), ids.slice(0, 20));
  }
  const withoutBos = tokenizer.encode(text, { add_special_tokens: false }).ids;
  const decoded = withoutBos.length ? tokenizer.decode(withoutBos) : "";
  if (decoded !== text) {
    roundTripFailures++;
    if (roundTripFailures <= 5) console.log("decode differs for", JSON.stringify(text.slice(0, 80)), JSON.stringify(decoded.slice(0, 80)));
  }
}
console.log(`${cases.length} texts, ${tokens} tokens: ${idMismatches} id mismatches, ${roundTripFailures} round-trip failures`);
process.exit(idMismatches || roundTripFailures ? 1 : 0);
