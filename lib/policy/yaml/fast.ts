/**
 * A fast parser for the plain subset of YAML that policy files are written
 * in, producing the same tree as the general parser (`events.ts`, on
 * js-yaml's events) would, about three times faster. It returns `undefined`
 * ("not mine") for anything outside the subset, and for every syntax error,
 * so the general parser parses those and reports them.
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
 * explicit keys, empty sequence items — is left to the general parser.
 *
 * Plain scalars are resolved as the general parser resolves them
 * (`resolvePlain`, the core schema).
 *
 * @module
 */

import { MAX_YAML_DEPTH, MAX_YAML_NODES } from "../model/mod.ts";
import { plainScalar, type YEntry, type YNode, type YScalar } from "./nodes.ts";

/** Thrown (as a value) when the text is not in the subset. */
const BAIL = Symbol("bail");
const MAX_DEPTH = MAX_YAML_DEPTH;

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

/** Characters the subset refuses anywhere (the general parser handles them). */
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
): YNode | null | undefined | typeof TOO_MANY {
  if (REFUSED.test(text)) return undefined;
  try {
    return new FastParser(text, words).document();
  } catch (e) {
    if (e === BAIL) return undefined;
    if (e === TOO_MANY) return TOO_MANY;
    throw e;
  }
}

/** What {@link parseFast} returns for a text of more than MAX_YAML_NODES nodes. */
export const TOO_MANY = Symbol("too many nodes");

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

class FastParser {
  readonly s: string;
  readonly n: number;
  pos = 0;
  /** Offset where the current line starts. */
  lineStart = 0;
  /** Column of the current content (valid after `nextContent`). */
  col = 0;
  depth = 0;
  /** Nodes in the collections finished so far. */
  nodes = 0;

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

  /**
   * `stack[base..]` as an exact-size array, removed from the stack; counts
   * the collection's nodes (a mapping's entry is two: its key and value).
   */
  take<T>(stack: T[], base: number, perItem: number): T[] {
    const out = stack.slice(base);
    stack.length = base;
    this.nodes += 1 + perItem * out.length;
    if (this.nodes > MAX_YAML_NODES) throw TOO_MANY;
    return out;
  }

  /** The plain scalar `s[start, end)`; a known word without copying it. */
  plain(start: number, end: number): YScalar {
    const candidates = this.words[end - start];
    if (candidates) {
      for (const w of candidates) {
        if (this.s.startsWith(w, start)) return { kind: "scalar", value: w, offset: start };
      }
    }
    return plainScalar(this.s.slice(start, end), start);
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
    return { kind: "seq", offset, items: this.take(items, base, 1) };
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
    return { kind: "map", offset, entries: this.take(entries, base, 2) };
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
    return this.plain(offset, end);
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
    return { kind: "seq", offset, items: this.take(items, base, 1) };
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
    return { kind: "map", offset, entries: this.take(entries, base, 2) };
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
    return this.plain(offset, end);
  }
}
