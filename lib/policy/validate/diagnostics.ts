/**
 * Diagnostics of policy files: what the loader reports (errors and
 * warnings), where (policy, rule, field, YAML line and column) and how it is
 * printed, one line each:
 *
 * ```text
 * p.yaml:14:9: error: policy "web", rule 2 (http), ports[1]: "80-70" is not a valid range: the start is above the end
 * ```
 *
 * - `line:column` are 1-based; the column counts characters (a BOM is not
 *   counted). Diagnostics about the file as a whole (it cannot be read) have
 *   no position: `p.yaml: error: ...`.
 * - `policy "web"` names the policy; an unnamed policy is `policy 3` (its
 *   ordinal in the file).
 * - `rule 2` is the rule's ordinal in its policy (1 = the first rule); its
 *   name follows in parentheses when the file gives one.
 * - The field is a path relative to the rule or policy: `ports[1]` (list
 *   elements counted from 0), `icmp.code`, `selector.labels.app`.
 *
 * @module
 */

/** Severity of a diagnostic: an error makes the file invalid; a warning does not. */
export type Severity = "error" | "warning";

/** One problem found in a policy file. */
export interface Diagnostic {
  severity: Severity;
  /** One sentence, without the location. */
  message: string;
  /** Name of the policy concerned, when it has a valid one. */
  policy?: string;
  /** Index of the policy in `policies` (0-based). */
  policyIndex?: number;
  /** Index of the rule in the policy's `rules` (0-based). */
  ruleIndex?: number;
  /** The rule's name, when the file gives one. */
  rule?: string;
  /** Path of the field, relative to the rule (or the policy): `ports[1]`, `icmp.code`, `selector.labels`. */
  field?: string;
  /** YAML line, 1-based. */
  line?: number;
  /** YAML column, 1-based. */
  column?: number;
}

/** Formats the location part (`policy "web", rule 2 (http), ports[1]`); empty at the top level. */
export function formatWhere(d: Diagnostic): string {
  const parts: string[] = [];
  if (d.policyIndex !== undefined || d.policy !== undefined) {
    parts.push(
      d.policy !== undefined
        ? `policy ${JSON.stringify(d.policy)}`
        : `policy ${d.policyIndex! + 1}`,
    );
  }
  if (d.ruleIndex !== undefined) {
    parts.push(
      d.rule !== undefined ? `rule ${d.ruleIndex + 1} (${d.rule})` : `rule ${d.ruleIndex + 1}`,
    );
  }
  if (d.field) parts.push(d.field);
  return parts.join(", ");
}

/**
 * One line for an operator: `SOURCE:LINE:COLUMN: SEVERITY: WHERE: MESSAGE`,
 * where `WHERE` (policy, rule, field) is left out at the top level and
 * `:LINE:COLUMN` when the diagnostic has no position.
 */
export function formatDiagnostic(d: Diagnostic, source: string): string {
  const loc = d.line !== undefined ? `${source}:${d.line}:${d.column ?? 1}` : source;
  const where = formatWhere(d);
  return `${loc}: ${d.severity}: ${where ? `${where}: ` : ""}${d.message}`;
}

/** Orders diagnostics by position (unpositioned first); stable for equal positions. */
export function compareDiagnostics(a: Diagnostic, b: Diagnostic): number {
  return (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0);
}

/** Offsets of a text to 1-based lines and columns. */
export class LineIndex {
  readonly #starts: number[] = [0];

  constructor(text: string) {
    for (let i = text.indexOf("\n"); i >= 0; i = text.indexOf("\n", i + 1)) {
      this.#starts.push(i + 1);
    }
  }

  /** The 1-based line and column of a 0-based offset. */
  position(offset: number): { line: number; column: number } {
    const s = this.#starts;
    let lo = 0;
    let hi = s.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (s[mid] <= offset) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, column: offset - s[lo] + 1 };
  }
}
