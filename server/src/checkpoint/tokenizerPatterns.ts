/**
 * Refuses tokenizer.json regexes that can backtrack catastrophically. The tokenizer runs them
 * synchronously on every row (`Split` pre-tokenizers, `Replace` normalizers and decoders), so a
 * pattern like `(a+)+$` freezes profiling on the first long run of `a`s with nothing able to stop it.
 *
 * The test is the classic star-height one (as in the safe-regex package): a quantified group whose
 * body is itself quantified. Every published tokenizer pattern (GPT-2's, Llama 3's, Qwen's,
 * Mistral's) has star height 1 and passes; written here because the packages for it are either
 * this same 40-line check, unmaintained, or a full regex analyser shipping a JVM build.
 */

/** The stages of tokenizer.json that hold regexes; the model's vocab and merges are left alone. */
const STAGES_WITH_PATTERNS = ['normalizer', 'pre_tokenizer', 'decoder', 'post_processor'];

/** The first pattern in `tokenizer` with nested quantifiers, or undefined. */
export function findCatastrophicPattern(tokenizer: Record<string, unknown>): string | undefined {
  const stack: unknown[] = STAGES_WITH_PATTERNS.map((stage) => tokenizer[stage]);
  while (stack.length > 0) {
    const node = stack.pop();
    if (typeof node !== 'object' || node === null) continue;
    const regex = (node as { pattern?: { Regex?: unknown } }).pattern?.Regex;
    if (typeof regex === 'string' && hasNestedQuantifier(regex)) return regex;
    // One at a time: spreading a 300,000-entry list into push() overflows the call stack.
    for (const child of Object.values(node)) stack.push(child);
  }
  return undefined;
}

/** Whether some group that contains a quantifier is itself followed by a quantifier. */
export function hasNestedQuantifier(pattern: string): boolean {
  /** Per open group: whether its body has a quantifier so far. */
  const groups: boolean[] = [];
  let lastClosedHadQuantifier = false;
  for (let i = 0; i < pattern.length; i++) {
    const char = pattern[i];
    if (char === '\\') {
      i++;
      lastClosedHadQuantifier = false;
      continue;
    }
    if (char === '[') {
      // A character class is one atom: skip to its end.
      for (i++; i < pattern.length && pattern[i] !== ']'; i++) if (pattern[i] === '\\') i++;
      lastClosedHadQuantifier = false;
      continue;
    }
    if (char === '(') {
      groups.push(false);
      lastClosedHadQuantifier = false;
      continue;
    }
    if (char === ')') {
      lastClosedHadQuantifier = groups.pop() ?? false;
      if (lastClosedHadQuantifier && groups.length > 0) groups[groups.length - 1] = true;
      continue;
    }
    const quantifier = char === '+' || char === '*' || (char === '{' && /^\{\d*,\d*\}/.test(pattern.slice(i)) && !/^\{\d+\}/.test(pattern.slice(i)));
    if (quantifier) {
      if (lastClosedHadQuantifier) return true;
      if (groups.length > 0) groups[groups.length - 1] = true;
    }
    // `?` after a quantifier makes it lazy and keeps what came before; anything else is a new atom.
    if (char !== '?' && !quantifier) lastClosedHadQuantifier = false;
  }
  return false;
}
