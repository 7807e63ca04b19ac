/**
 * Collects the diagnostics of one policy file while it is validated, with
 * offsets turned into lines and columns at the end; and the small helpers the
 * validator's messages share (how a value is shown, "did you mean").
 *
 * @module
 */

import { editDistance } from "../../base/mod.ts";
import { compareDiagnostics, type Diagnostic, LineIndex, type Severity } from "./diagnostics.ts";
import { MAX_DIAGNOSTICS, MAX_SHOWN_CHARS } from "../model/mod.ts";
import type { YNode, YValue } from "../yaml/mod.ts";

/** Which policy and rule a diagnostic is about. */
export interface Where {
  policy?: string;
  policyIndex?: number;
  ruleIndex?: number;
  rule?: string;
}

interface Pending {
  severity: Severity;
  offset: number;
  where: Where;
  field: string | undefined;
  message: string;
}

/** Diagnostics of one file, in the order found; `finish` sorts them by position. */
export class Reporter {
  readonly #text: string;
  #lines: LineIndex | undefined;
  readonly #pending: Pending[] = [];
  #errors = 0;
  #warnings = 0;

  constructor(text: string) {
    this.#text = text;
  }

  /** Number of errors so far. */
  get errorCount(): number {
    return this.#errors;
  }

  /** The 1-based line of an offset. */
  lineOf(offset: number): number {
    this.#lines ??= new LineIndex(this.#text);
    return this.#lines.position(offset).line;
  }

  /**
   * Records an error at `offset` (`where` is copied: callers may reuse it).
   * Past {@link MAX_DIAGNOSTICS} errors they are only counted.
   */
  error(offset: number, where: Where, field: string | undefined, message: string): void {
    if (++this.#errors > MAX_DIAGNOSTICS) return;
    this.#pending.push({ severity: "error", offset, where: { ...where }, field, message });
  }

  /** Records a warning at `offset`; past {@link MAX_DIAGNOSTICS} warnings they are only counted. */
  warn(offset: number, where: Where, field: string | undefined, message: string): void {
    if (++this.#warnings > MAX_DIAGNOSTICS) return;
    this.#pending.push({ severity: "warning", offset, where: { ...where }, field, message });
  }

  /** The errors and warnings, each sorted by position. */
  finish(): { errors: Diagnostic[]; warnings: Diagnostic[] } {
    const errors: Diagnostic[] = [];
    const warnings: Diagnostic[] = [];
    for (const p of this.#pending) {
      this.#lines ??= new LineIndex(this.#text);
      const { line, column } = this.#lines.position(p.offset);
      const d: Diagnostic = { severity: p.severity, message: p.message };
      if (p.where.policy !== undefined) d.policy = p.where.policy;
      if (p.where.policyIndex !== undefined) d.policyIndex = p.where.policyIndex;
      if (p.where.ruleIndex !== undefined) d.ruleIndex = p.where.ruleIndex;
      if (p.where.rule !== undefined) d.rule = p.where.rule;
      if (p.field !== undefined) d.field = p.field;
      d.line = line;
      d.column = column;
      (p.severity === "error" ? errors : warnings).push(d);
    }
    errors.sort(compareDiagnostics);
    warnings.sort(compareDiagnostics);
    const more = (list: Diagnostic[], count: number, what: string) => {
      if (count <= MAX_DIAGNOSTICS) return;
      const last = list[list.length - 1];
      list.push({
        severity: last.severity,
        message: `${(count - MAX_DIAGNOSTICS).toLocaleString("en-US")} more ${what} are not ` +
          `shown (the first ${MAX_DIAGNOSTICS.toLocaleString("en-US")} found are)`,
        line: last.line,
        column: last.column,
      });
    };
    more(errors, this.#errors, "errors");
    more(warnings, this.#warnings, "warnings");
    return { errors, warnings };
  }
}

/**
 * A scalar as written in a message: strings quoted, with invisible
 * characters escaped (`\u200b`: a bidi control would turn the terminal's
 * line around) and long ones cut; others as they are.
 */
export function show(v: YValue): string {
  if (typeof v !== "string") return String(v);
  if (v.length <= MAX_SHOWN_CHARS) return quote(v);
  return `${quote(v.slice(0, MAX_SHOWN_CHARS - 20))}… (${
    v.length.toLocaleString("en-US")
  } characters)`;
}

/** Characters that JSON leaves as they are but a terminal would not show as written. */
const INVISIBLE = /[\p{Cf}\p{Co}\p{Cn}\p{Zl}\p{Zp}\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]/gu;

function quote(s: string): string {
  return JSON.stringify(s).replace(
    INVISIBLE,
    (c) => `\\u${c.codePointAt(0)!.toString(16).padStart(4, "0")}`,
  );
}

/** What a node is, for "must be X, not Y" messages. */
export function describe(n: YNode): string {
  if (n.kind === "map") return "a mapping";
  if (n.kind === "seq") return "a list";
  const v = n.value;
  if (v === null) return "empty";
  if (typeof v === "string") return `the string ${show(v)}`;
  if (typeof v === "number") return `the number ${show(v)}`;
  return `the boolean ${show(v)}`;
}

/**
 * The valid word closest to `text`: a known synonym, the same word in another
 * case or with `-`/`_`, or one within a small edit distance; else undefined.
 */
export function suggest(
  text: string,
  valid: readonly string[],
  synonyms: Readonly<Record<string, string>> = {},
): string | undefined {
  if (text.length > MAX_SHOWN_CHARS) return undefined;
  const folded = text.toLowerCase().replace(/[-_\s]/g, "");
  const syn = synonyms[folded];
  if (syn) return syn;
  for (const v of valid) if (v.toLowerCase() === folded) return v;
  let best: string | undefined;
  let bestDist = Infinity;
  for (const v of valid) {
    const d = editDistance(folded, v.toLowerCase());
    if (d < bestDist) {
      best = v;
      bestDist = d;
    }
  }
  const limit = Math.max(1, Math.min(2, Math.floor(text.length / 3)));
  return bestDist <= limit ? best : undefined;
}

/** `a, b and c`. */
export function listWords(words: readonly string[], last = "and"): string {
  return words.length < 2
    ? words.join("")
    : `${words.slice(0, -1).join(", ")} ${last} ${words[words.length - 1]}`;
}
