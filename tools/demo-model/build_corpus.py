"""Build the multi-domain corpus for the MoE Studio demo model, offline.

Run by hand (never by CI):  /usr/bin/python3 tools/demo-model/build_corpus.py
Writes tools/demo-model/build/{domain}.{train,valid}.jsonl (the full corpus, not
committed), build/manifest.json (which files went where) and the committed list of
source files, tools/demo-model/corpus-sources.txt. Deterministic: it
sorts every file list and seeds every generator.

Domains and their sources (licences are recorded in tools/demo-model/corpus.md):
  code        Python 3.11 standard library sources under /usr/lib/python3.11 (PSF licence)
  prose       /usr/share/common-licenses texts and README/NEWS files of installed
              Debian packages under /usr/share/doc (each under its package's licence)
  arithmetic  generated "a + b = c" / "a - b = c" lines, operands 0..99
  records     generated JSON lines and CSV rows of synthetic people, orders and readings

Held out for validation: whole files (code, prose) chosen by a hash of the path;
for arithmetic every (a, op, b) triple whose hash falls in the held-out tenth, so
neither the validation split nor the multiple-choice task was seen in training;
records are generated from a different seed for validation.
Only printable ASCII (plus newline and tab) is kept, so the Python BPE and the
JavaScript tokenizer see identical pre-token boundaries.
"""
import gzip
import hashlib
import json
import os
import random
import re

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.join(HERE, "build")
# Characters per record, per domain, so that [BOS] + record fits in 256 tokens
# (digits are single tokens, so arithmetic and records need short chunks).
CHUNK_CHARS = {"code": 460, "prose": 520, "arithmetic": 270, "records": 400}
MAX_TRAIN_CHARS = 3_000_000  # per domain
ASCII_LINE = re.compile(r"^[\t\x20-\x7e]*$")


def held_out(key: str, tenths: int = 1) -> bool:
    return int(hashlib.sha256(key.encode()).hexdigest(), 16) % 10 < tenths


def ascii_only(text: str) -> str:
    lines = [l.rstrip() for l in text.replace("\r\n", "\n").split("\n")]
    return "\n".join(l for l in lines if ASCII_LINE.match(l))


def chunk(text: str, limit: int):
    """Cut a text into chunks of whole lines, each at most `limit` characters."""
    out, cur = [], ""
    for line in text.split("\n"):
        line = line[:limit - 1]
        if cur and len(cur) + len(line) + 1 > limit:
            out.append(cur)
            cur = ""
        cur = cur + line + "\n" if cur or line.strip() else cur
    if cur.strip():
        out.append(cur)
    return [c.strip("\n") + "\n" for c in out if len(c.strip()) >= 40]


def read_text(path: str) -> str:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        return f.read()


def file_domain(paths, limit):
    train, valid, used = [], [], []
    for p in paths:
        try:
            text = ascii_only(read_text(p))
        except (OSError, EOFError):
            continue
        pieces = chunk(text, limit)
        if not pieces:
            continue
        used.append(p)
        (valid if held_out(p) else train).extend(pieces)
    return train, valid, used


def code_domain():
    root = "/usr/lib/python3.11"
    paths = []
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x not in ("dist-packages", "site-packages", "__pycache__"))
        paths += [os.path.join(d, f) for f in sorted(files) if f.endswith(".py")]
    return file_domain(sorted(paths), CHUNK_CHARS["code"])


def prose_domain():
    paths = set()
    lic = "/usr/share/common-licenses"
    for f in sorted(os.listdir(lic)):
        paths.add(os.path.realpath(os.path.join(lic, f)))
    for d, dirs, files in os.walk("/usr/share/doc"):
        dirs.sort()
        for f in sorted(files):
            low = f.lower()
            if low.startswith(("readme", "news", "authors", "faq", "todo")) or low.endswith((".txt", ".md", ".md.gz", ".txt.gz")):
                paths.add(os.path.realpath(os.path.join(d, f)))
    paths = sorted(p for p in paths if os.path.isfile(p))
    # Keep prose-like files: mostly letters and spaces, not tables or code.
    keep = []
    for p in paths:
        try:
            t = read_text(p)
        except (OSError, EOFError):
            continue
        letters = sum(c.isalpha() or c == " " for c in t)
        if len(t) > 200 and letters / len(t) > 0.8:
            keep.append(p)
    return file_domain(keep, CHUNK_CHARS["prose"])


def arithmetic_domain(rng_seed=1):
    triples = [(a, op, b) for a in range(100) for b in range(100) for op in "+-"]
    train_t = [t for t in triples if not held_out("%d%s%d" % t)]
    valid_t = [t for t in triples if held_out("%d%s%d" % t)]

    def line(t):
        a, op, b = t
        return "%d %s %d = %d" % (a, op, b, a + b if op == "+" else a - b)

    def records(ts, n_copies, seed):
        rng = random.Random(seed)
        pool = ts * n_copies
        rng.shuffle(pool)
        return chunk("\n".join(line(t) for t in pool), CHUNK_CHARS["arithmetic"])

    return records(train_t, 40, rng_seed), records(valid_t, 1, rng_seed + 1), valid_t


FIRST = ["Ada", "Alan", "Grace", "Linus", "Ken", "Barbara", "Edsger", "Donald", "Margaret", "John",
         "Frances", "Dennis", "Radia", "Tim", "Guido", "Bjarne", "Hedy", "Karen", "Niklaus", "Sophie"]
LAST = ["Lovelace", "Turing", "Hopper", "Torvalds", "Thompson", "Liskov", "Dijkstra", "Knuth",
        "Hamilton", "McCarthy", "Allen", "Ritchie", "Perlman", "Berners-Lee", "van Rossum",
        "Stroustrup", "Lamarr", "Jones", "Wirth", "Wilson"]
CITIES = ["London", "Paris", "Berlin", "Madrid", "Rome", "Oslo", "Vienna", "Prague", "Lisbon",
          "Dublin", "Warsaw", "Athens", "Zurich", "Brussels", "Helsinki", "Budapest"]
ITEMS = ["keyboard", "monitor", "mouse", "laptop", "cable", "charger", "headset", "webcam",
         "printer", "router", "speaker", "tablet", "desk", "chair", "lamp", "microphone"]
STATUS = ["pending", "shipped", "delivered", "cancelled", "returned"]
SENSORS = ["temp", "humidity", "pressure", "co2", "light"]


def record_line(rng):
    kind = rng.randrange(6)
    if kind == 0:
        return json.dumps({"id": rng.randrange(1, 100000), "name": rng.choice(FIRST) + " " + rng.choice(LAST),
                           "age": rng.randrange(18, 90), "city": rng.choice(CITIES),
                           "active": rng.random() < 0.7})
    if kind == 1:
        return json.dumps({"order": "A%05d" % rng.randrange(100000), "item": rng.choice(ITEMS),
                           "qty": rng.randrange(1, 10), "price": round(rng.uniform(2, 900), 2),
                           "status": rng.choice(STATUS),
                           "date": "2024-%02d-%02d" % (rng.randrange(1, 13), rng.randrange(1, 29))})
    if kind == 2:
        return json.dumps({"sensor": rng.choice(SENSORS) + "-%d" % rng.randrange(1, 40),
                           "ts": 1700000000 + rng.randrange(10 ** 7),
                           "value": round(rng.gauss(20, 8), 3), "ok": rng.random() < 0.95})
    if kind == 3:
        return "%d,%s,%s,%d,%s" % (rng.randrange(1, 100000), rng.choice(FIRST), rng.choice(LAST),
                                   rng.randrange(18, 90), rng.choice(CITIES))
    if kind == 4:
        return "A%05d,%s,%d,%.2f,%s" % (rng.randrange(100000), rng.choice(ITEMS), rng.randrange(1, 10),
                                        rng.uniform(2, 900), rng.choice(STATUS))
    return "%s-%d,%d,%.3f" % (rng.choice(SENSORS), rng.randrange(1, 40), 1700000000 + rng.randrange(10 ** 7),
                              rng.gauss(20, 8))


HEADERS = {3: "id,first,last,age,city", 4: "order,item,qty,price,status", 5: "sensor,ts,value"}


def records_domain():
    def block(rng):
        # One record block: a CSV table with its header, or a run of JSON lines.
        kind = rng.randrange(6)
        lines = []
        if kind >= 3:
            lines.append(HEADERS[kind])
        while sum(len(l) + 1 for l in lines) < CHUNK_CHARS["records"] - 150:
            sub = random.Random(rng.random())
            while True:
                l = record_line(sub)
                if (kind >= 3) == (not l.startswith("{")) and (kind < 3 or l.count(",") == HEADERS[kind].count(",")):
                    break
            lines.append(l)
        return "\n".join(lines) + "\n"

    def make(seed, n):
        rng = random.Random(seed)
        return [block(rng) for _ in range(n)]

    return make(11, 11000), make(12, 150)


def write(path, texts):
    with open(path, "w") as f:
        for t in texts:
            f.write(json.dumps({"text": t}) + "\n")


def cap(texts, limit=MAX_TRAIN_CHARS, seed=0):
    texts = list(texts)
    random.Random(seed).shuffle(texts)
    out, n = [], 0
    for t in texts:
        if n + len(t) > limit:
            break
        out.append(t)
        n += len(t)
    return out


def main():
    os.makedirs(BUILD, exist_ok=True)
    manifest = {}
    code_train, code_valid, code_files = code_domain()
    prose_train, prose_valid, prose_files = prose_domain()
    arith_train, arith_valid, arith_held = arithmetic_domain()
    rec_train, rec_valid = records_domain()
    domains = {
        "code": (code_train, code_valid),
        "prose": (prose_train, prose_valid),
        "arithmetic": (arith_train, arith_valid),
        "records": (rec_train, rec_valid),
    }
    for name, (train, valid) in domains.items():
        train = cap(train)
        valid = cap(valid, 120_000, seed=1)
        write(os.path.join(BUILD, name + ".train.jsonl"), train)
        write(os.path.join(BUILD, name + ".valid.jsonl"), valid)
        manifest[name] = {"train_records": len(train), "train_chars": sum(map(len, train)),
                          "valid_records": len(valid), "valid_chars": sum(map(len, valid))}
        print(name, manifest[name])
    manifest["code"]["files"] = code_files
    manifest["prose"]["files"] = prose_files
    manifest["arithmetic"]["held_out_triples"] = ["%d %s %d" % t for t in arith_held]
    with open(os.path.join(BUILD, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    with open(os.path.join(HERE, "corpus-sources.txt"), "w") as f:
        f.write("# Files read by build_corpus.py, per domain (V = held out for validation).\n")
        for name in ("code", "prose"):
            for p in manifest[name]["files"]:
                f.write("%s\t%s\t%s\n" % (name, "V" if held_out(p) else "T", p))


if __name__ == "__main__":
    main()
