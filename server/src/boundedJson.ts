/**
 * JSON.parse for text from strangers. V8's parser and every later walk over the value recurse, so
 * a 20,000-deep `[[[[…]]]]` overflows the stack (a RangeError, not a user error). A linear pre-scan
 * over the raw text measures the nesting first; it costs about as much as one pass of JSON.parse's
 * lexer and nothing when the text is not JSON at all.
 */

/** Deeper than any real config, index, tokenizer, dataset row or plan (they nest under 10). */
export const MAX_JSON_DEPTH = 256;

/** Throws a plain Error (the caller wraps it with the file's name) when the text is not bounded JSON. */
export function parseBoundedJson(text: string, maxDepth = MAX_JSON_DEPTH): unknown {
  const depth = jsonNestingDepth(text, maxDepth);
  if (depth > maxDepth) throw new Error(`values are nested more than ${maxDepth} levels deep`);
  return JSON.parse(text);
}

/** The deepest bracket nesting outside strings, stopping as soon as it passes `limit`. */
export function jsonNestingDepth(text: string, limit = Infinity): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (inString) {
      if (code === 0x5c) i++; // backslash: skip the escaped character
      else if (code === 0x22) inString = false;
    } else if (code === 0x22) inString = true;
    else if (code === 0x5b || code === 0x7b) {
      if (++depth > deepest) {
        deepest = depth;
        if (deepest > limit) return deepest;
      }
    } else if (code === 0x5d || code === 0x7d) depth--;
  }
  return deepest;
}
