/**
 * A fast parser for the plain subset of YAML that policy files are written
 * in, producing the same tree as the `yaml` package would (see
 * `yaml_tree.ts`), about 50 times faster. It returns `undefined` ("not
 * mine") for anything outside the subset, and for every syntax error, so the
 * `yaml` package parses those and reports them.
 *
 * The subset:
 * - block mappings (`key: value`, one key per line) and block sequences
 *   (`- item`, also `- key: value` and `- - item`), indented with spaces;
 *   a sequence may sit at its key's column;
 * - flow sequences and mappings (`[80, "8000-8099"]`, `{ app: web }`) that
 *   open and close on the same line;
 * - plain scalars on one line (without `,[]{}` in block context), single-
 *   quoted scalars, double-quoted scalars without escapes;
 * - comments, blank lines.
 * Anything else — tabs, CR, control characters, `---`, directives,
 * anchors, aliases, tags, block scalars, multi-line scalars or flows,
 * explicit keys, empty sequence items — is left to the `yaml` package.
 *
 * Plain scalars are resolved with the core schema's rules, in the `yaml`
 * package's order (null, bool, octal, decimal, hex, NaN/infinity, floats).
 *
 * @module
 */

import type { YEntry, YNode, YScalar, YValue } from "./yaml_tree.ts";

/** Thrown (as a value) when the text is not in the subset. */
const BAIL = Symbol("bail");
const MAX_DEPTH = 64;

const NL = 10;
const SPACE = 32;
const HASH = 35;
const DASH = 45;
const COLON = 58;
const SQUOTE = 39;
const DQUOTE = 34;
const LBRACKET = 91;
const RBRACKET = 93;
const LBRACE = 123;
const RBRACE = 125;
const COMMA = 44;
const BACKSLASH = 92;

/** Characters the subset refuses anywhere (the `yaml` package handles them). */
// deno-lint-ignore no-control-regex
const REFUSED = /[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\ufeff]/;

/**
 * Parses `text`; `null` for an empty document, `undefined` when the text is
 * not in the subset. Plain scalars and keys equal to one of `words` are
 * returned as that very string (comparisons with it are then cheaper).
 */
export function parseFast(
  text: string,
  words: ReadonlySet<string> = new Set(),
): YNode | null | undefined {
  if (REFUSED.test(text)) return undefined;
  try {
    return new FastParser(text, words).document();
  } catch (e) {
    if (e === BAIL) return undefined;
    throw e;
  }
}

function bail(): never {
  throw BAIL;
}

/** True for a code that is a flow indicator: `,[]{}`. */
function isFlowIndicator(c: number): boolean {
  return c === COMMA || c === LBRACKET || c === RBRACKET || c === LBRACE || c === RBRACE;
}

/** Characters that may not start a plain scalar here (besides `-`, `:` handled apart). */
function refusedFirst(c: number): boolean {
  // ? , [ ] { } # & * ! | > ' " % @ `
  return c === 63 || isFlowIndicator(c) || c === HASH || c === 38 || c === 42 || c === 33 ||
    c === 124 || c === 62 || c === SQUOTE || c === DQUOTE || c === 37 || c === 64 || c === 96;
}

const INT_OCT = /^0o[0-7]+$/;
const INT = /^[-+]?[0-9]+$/;
const INT_HEX = /^0x[0-9a-fA-F]+$/;
const FLOAT_NAN = /^(?:[-+]?\.(?:inf|Inf|INF)|\.nan|\.NaN|\.NAN)$/;
const FLOAT_EXP = /^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$/;
const FLOAT = /^[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*)$/;

/** Resolves a plain scalar with the YAML 1.2 core schema, as the `yaml` package does. */
export function resolvePlain(s: string): YValue {
  const c = s.charCodeAt(0);
  // Fast path: a plain scalar starting with a letter other than n/N/t/T/f/F is a string.
  if ((c >= 97 && c <= 122) || (c >= 65 && c <= 90)) {
    const l = c | 32;
    if (l !== 110 && l !== 116 && l !== 102) return s;
  }
  if (s === "~" || s === "null" || s === "Null" || s === "NULL") return null;
  if (s === "true" || s === "True" || s === "TRUE") return true;
  if (s === "false" || s === "False" || s === "FALSE") return false;
  if (!((c >= 48 && c <= 57) || c === 43 || c === 45 || c === 46)) return s;
  if (INT_OCT.test(s)) return parseInt(s.substring(2), 8);
  if (INT.test(s)) return parseInt(s, 10);
  if (INT_HEX.test(s)) return parseInt(s.substring(2), 16);
  if (FLOAT_NAN.test(s)) {
    return s.slice(-3).toLowerCase() === "nan" ? NaN : s[0] === "-" ? -Infinity : Infinity;
  }
  if (FLOAT_EXP.test(s) || FLOAT.test(s)) return parseFloat(s);
  return s;
}

class FastParser {
  readonly s: string;
  readonly n: number;
  pos = 0;
  /** Offset where the current line starts. */
  lineStart = 0;
  /** Column of the current content (valid after `nextContent`). */
  col = 0;
  depth = 0;

  /**
   * Items and entries of the collections being read, innermost last: each
   * collection takes an exact-size copy of its part at its end (arrays grown
   * by push keep spare capacity, which a 100,000-rule tree pays in memory).
   */
  readonly items: YNode[] = [];
  readonly entries: YEntry[] = [];
  /** Set by `scalarOrKey`: the scalar is a key. */
  atKey = false;
  /** Known words by length. */
  readonly words: (string[] | undefined)[] = [];

  constructor(text: string, words: ReadonlySet<string>) {
    this.s = text;
    this.n = text.length;
    for (const w of words) (this.words[w.length] ??= []).push(w);
  }

  /** `stack[base..]` as an exact-size array, removed from the stack. */
  take<T>(stack: T[], base: number): T[] {
    const out = stack.slice(base);
    stack.length = base;
    return out;
  }

  /** The value of the plain scalar `s[start, end)`; a known word without copying it. */
  plain(start: number, end: number): YValue {
    const candidates = this.words[end - start];
    if (candidates) {
      for (const w of candidates) if (this.s.startsWith(w, start)) return w;
    }
    return resolvePlain(this.s.slice(start, end));
  }

  document(): YNode | null {
    if (!this.nextContent(true)) return null;
    this.refuseMarkers();
    const root = this.blockNode(this.col);
    if (this.pos < this.n) bail();
    return root;
  }

  /** `---`, `...` and directives are left to the library. */
  refuseMarkers(): void {
    if (this.col !== 0) return;
    const c = this.s.charCodeAt(this.pos);
    if (c === 37 || this.s.startsWith("---", this.pos) || this.s.startsWith("...", this.pos)) {
      bail();
    }
  }

  /**
   * Moves to the first character of the next line with content (skipping
   * blank and comment lines), starting at a line start when `atLineStart`,
   * else after the end of the current line's content. False at the end.
   */
  nextContent(atLineStart: boolean): boolean {
    const s = this.s;
    let p = this.pos;
    if (!atLineStart) {
      // The rest of this line must be spaces and an optional comment.
      while (p < this.n && s.charCodeAt(p) === SPACE) p++;
      if (p < this.n && s.charCodeAt(p) === HASH) {
        if (p > this.lineStart && s.charCodeAt(p - 1) !== SPACE) bail(); // "x#c" is no comment
        p = s.indexOf("\n", p);
        if (p < 0) p = this.n;
      }
      if (p < this.n) {
        if (s.charCodeAt(p) !== NL) bail();
        p++;
      }
    }
    for (;;) {
      if (p >= this.n) {
        this.pos = this.n;
        return false;
      }
      const start = p;
      while (p < this.n && s.charCodeAt(p) === SPACE) p++;
      if (p >= this.n) {
        this.pos = this.n;
        return false;
      }
      const c = s.charCodeAt(p);
      if (c === NL) {
        p++;
        continue;
      }
      if (c === HASH) {
        p = s.indexOf("\n", p);
        if (p < 0) {
          this.pos = this.n;
          return false;
        }
        p++;
        continue;
      }
      this.lineStart = start;
      this.col = p - start;
      this.pos = p;
      return true;
    }
  }

  /** True when the character at `p` ends a token: space, newline or the end. */
  isBlankAt(p: number): boolean {
    if (p >= this.n) return true;
    const c = this.s.charCodeAt(p);
    return c === SPACE || c === NL;
  }

  /** A node starting at the current content (column `col`); leaves `pos` at the next content. */
  blockNode(col: number): YNode {
    if (++this.depth > MAX_DEPTH) bail();
    const s = this.s;
    const c = s.charCodeAt(this.pos);
    let node: YNode;
    if (c === DASH && this.isBlankAt(this.pos + 1)) node = this.blockSeq(col);
    else if (c === LBRACKET || c === LBRACE) {
      node = c === LBRACKET ? this.flowSeq() : this.flowMap();
      this.nextContent(false);
    } else {
      const first = this.scalarOrKey();
      if (this.atKey) node = this.blockMap(col, first);
      else {
        // A lone scalar; the caller refuses what follows it on deeper lines
        // (a multi-line scalar).
        node = first;
        this.nextContent(false);
      }
    }
    this.depth--;
    return node;
  }

  blockSeq(col: number): YNode {
    const items = this.items;
    const base = items.length;
    const offset = this.pos;
    const s = this.s;
    for (;;) {
      this.pos++; // the dash
      while (this.pos < this.n && s.charCodeAt(this.pos) === SPACE) this.pos++;
      const c = s.charCodeAt(this.pos);
      if (this.pos >= this.n || c === NL || c === HASH) {
        if (c === HASH && s.charCodeAt(this.pos - 1) !== SPACE) bail();
        if (!this.nextContent(false) || this.col <= col) bail(); // empty item
        items.push(this.blockNode(this.col));
      } else {
        const itemCol = this.pos - this.lineStart;
        this.col = itemCol;
        items.push(this.blockNode(itemCol));
      }
      if (this.pos >= this.n || this.col < col) break;
      if (this.col > col) bail();
      if (s.charCodeAt(this.pos) !== DASH || !this.isBlankAt(this.pos + 1)) break;
    }
    return { kind: "seq", offset, items: this.take(items, base) };
  }

  /** A block mapping whose first key (at column `col`) is read, `pos` at its colon. */
  blockMap(col: number, firstKey: YScalar): YNode {
    const entries = this.entries;
    const base = entries.length;
    const offset = firstKey.offset;
    const s = this.s;
    let key = firstKey;
    for (;;) {
      this.pos++; // the colon
      while (this.pos < this.n && s.charCodeAt(this.pos) === SPACE) this.pos++;
      const c = s.charCodeAt(this.pos);
      let value: YNode;
      if (this.pos >= this.n || c === NL || c === HASH) {
        if (c === HASH && s.charCodeAt(this.pos - 1) !== SPACE) bail();
        const more = this.nextContent(false);
        if (more && this.col > col) value = this.blockNode(this.col);
        else if (
          more && this.col === col && s.charCodeAt(this.pos) === DASH &&
          this.isBlankAt(this.pos + 1)
        ) {
          value = this.blockSeq(col); // a sequence at its key's column
        } else value = { kind: "scalar", value: null, offset: key.offset };
      } else {
        if (c === LBRACKET) value = this.flowSeq();
        else if (c === LBRACE) value = this.flowMap();
        else {
          if (c === DASH && this.isBlankAt(this.pos + 1)) bail();
          value = this.scalarOrKey();
          if (this.atKey) bail(); // a mapping on the key's line
        }
        this.nextContent(false);
      }
      entries.push({ key: key.value, keyOffset: key.offset, value });
      if (this.pos >= this.n || this.col < col) break;
      if (this.col > col) bail();
      const d = s.charCodeAt(this.pos);
      if ((d === DASH && this.isBlankAt(this.pos + 1)) || d === LBRACKET || d === LBRACE) bail();
      key = this.scalarOrKey();
      if (!this.atKey) bail();
    }
    return { kind: "map", offset, entries: this.take(entries, base) };
  }

  /**
   * A quoted or plain scalar on the current line (block context). When it is
   * followed by `:` and a blank it is a key: `atKey` is set and `pos` is at
   * the colon; else `pos` is just after the scalar.
   */
  scalarOrKey(): YScalar {
    const s = this.s;
    const offset = this.pos;
    const c = s.charCodeAt(offset);
    this.atKey = false;
    if (c === SQUOTE || c === DQUOTE) {
      const q = this.quoted();
      let p = this.pos;
      while (s.charCodeAt(p) === SPACE) p++;
      if (s.charCodeAt(p) === COLON && this.isBlankAt(p + 1)) {
        this.atKey = true;
        this.pos = p;
      }
      return q;
    }
    if (refusedFirst(c) || ((c === COLON || c === DASH) && this.isBlankAt(offset + 1))) bail();
    let p = offset;
    let end = offset;
    for (; p < this.n; p++) {
      const d = s.charCodeAt(p);
      if (d === NL) break;
      if (d === SPACE) continue;
      if (d === HASH && s.charCodeAt(p - 1) === SPACE) break;
      if (d === COLON && this.isBlankAt(p + 1)) {
        this.atKey = true;
        if (end - offset > 1024) bail();
        break;
      }
      if (isFlowIndicator(d)) bail();
      end = p + 1;
    }
    this.pos = this.atKey ? p : end;
    return { kind: "scalar", value: this.plain(offset, end), offset };
  }

  /** A quoted scalar on one line: `'...'` (`''` is a quote) or `"..."` without escapes. */
  quoted(): YScalar {
    const s = this.s;
    const offset = this.pos;
    const q = s.charCodeAt(offset);
    let p = offset + 1;
    let doubled = false;
    for (;; p++) {
      if (p >= this.n) bail();
      const d = s.charCodeAt(p);
      if (d === NL || (d === BACKSLASH && q === DQUOTE)) bail();
      if (d !== q) continue;
      if (q === SQUOTE && s.charCodeAt(p + 1) === SQUOTE) {
        doubled = true;
        p++;
        continue;
      }
      break;
    }
    const raw = s.slice(offset + 1, p);
    this.pos = p + 1;
    return { kind: "scalar", value: doubled ? raw.replaceAll("''", "'") : raw, offset };
  }

  skipSpaces(): void {
    const s = this.s;
    while (this.pos < this.n && s.charCodeAt(this.pos) === SPACE) this.pos++;
  }

  flowSeq(): YNode {
    if (++this.depth > MAX_DEPTH) bail();
    const s = this.s;
    const offset = this.pos++;
    const items = this.items;
    const base = items.length;
    this.skipSpaces();
    if (s.charCodeAt(this.pos) !== RBRACKET) {
      for (;;) {
        items.push(this.flowItem());
        this.skipSpaces();
        const c = s.charCodeAt(this.pos);
        if (c === COMMA) {
          this.pos++;
          this.skipSpaces();
          if (s.charCodeAt(this.pos) === RBRACKET) break;
          continue;
        }
        if (c === RBRACKET) break;
        bail();
      }
    }
    this.pos++; // ]
    this.depth--;
    return { kind: "seq", offset, items: this.take(items, base) };
  }

  flowMap(): YNode {
    if (++this.depth > MAX_DEPTH) bail();
    const s = this.s;
    const offset = this.pos++;
    const entries = this.entries;
    const base = entries.length;
    this.skipSpaces();
    if (s.charCodeAt(this.pos) !== RBRACE) {
      for (;;) {
        const c0 = s.charCodeAt(this.pos);
        const key = c0 === SQUOTE || c0 === DQUOTE ? this.quoted() : this.flowPlain();
        this.skipSpaces();
        if (s.charCodeAt(this.pos) !== COLON || !this.isBlankAt(this.pos + 1)) bail();
        this.pos++;
        this.skipSpaces();
        const v = s.charCodeAt(this.pos);
        if (v === COMMA || v === RBRACE) bail(); // empty value
        entries.push({ key: key.value, keyOffset: key.offset, value: this.flowItem() });
        this.skipSpaces();
        const c = s.charCodeAt(this.pos);
        if (c === COMMA) {
          this.pos++;
          this.skipSpaces();
          if (s.charCodeAt(this.pos) === RBRACE) break;
          continue;
        }
        if (c === RBRACE) break;
        bail();
      }
    }
    this.pos++; // }
    this.depth--;
    return { kind: "map", offset, entries: this.take(entries, base) };
  }

  /** An item of a flow collection (not a `key: value` pair). */
  flowItem(): YNode {
    const c = this.s.charCodeAt(this.pos);
    if (c === LBRACKET) return this.flowSeq();
    if (c === LBRACE) return this.flowMap();
    if (c === SQUOTE || c === DQUOTE) return this.quoted();
    return this.flowPlain();
  }

  /**
   * A plain scalar in a flow collection: up to `,[]{}`, `: `, ` #` or the end
   * of the line (a `:` followed by anything else is part of it: `fd00::1`).
   */
  flowPlain(): YScalar {
    const s = this.s;
    const offset = this.pos;
    const c = s.charCodeAt(offset);
    const next = s.charCodeAt(offset + 1);
    if (refusedFirst(c)) bail();
    if ((c === COLON || c === DASH) && (this.isBlankAt(offset + 1) || isFlowIndicator(next))) {
      bail();
    }
    let p = offset;
    let end = offset;
    for (; p < this.n; p++) {
      const d = s.charCodeAt(p);
      if (d === NL) bail(); // a flow collection spanning lines
      if (d === SPACE) continue;
      if (isFlowIndicator(d)) break;
      if (d === HASH && s.charCodeAt(p - 1) === SPACE) bail();
      if (d === COLON) {
        const e = s.charCodeAt(p + 1);
        if (this.isBlankAt(p + 1) || isFlowIndicator(e)) break;
      }
      end = p + 1;
    }
    if (end === offset) bail();
    this.pos = end;
    return { kind: "scalar", value: this.plain(offset, end), offset };
  }
}
