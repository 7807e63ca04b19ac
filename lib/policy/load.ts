/**
 * Loading a policy file (SPEC §3.1): read, parse the YAML, validate the
 * schema, look for likely mistakes, compile every policy. Every error of the
 * file is reported, each with its location (see `diagnostics.ts`); the
 * result carries the typed `PolicySet`, ready for selection and the data
 * plane, only when there is none.
 *
 * Stages, each reporting everything it finds:
 * 1. text: readable, at most {@link MAX_POLICY_FILE_BYTES}, UTF-8 (a BOM is
 *    dropped);
 * 2. YAML syntax (one error per line; the later stages need a parsed file);
 * 3. schema: types, values, unknown keys, duplicates (`schema.ts`), with the
 *    warnings about one field or one rule;
 * 4. only for a file without errors: warnings that compare rules and
 *    policies (`lint.ts`), then compiling each policy: a policy that does not
 *    fit the maps is an error, a rule that never decides a packet a warning
 *    (`analyze.ts`).
 *
 * @module
 */

import type { CompiledPolicy } from "./compile.ts";
import { compileSet } from "./analyze.ts";
import { compareDiagnostics, type Diagnostic } from "./diagnostics.ts";
import { lintSet } from "./lint.ts";
import { Reporter } from "./report.ts";
import { validateTree, WORDS } from "./schema.ts";
import type { PolicySet } from "./types.ts";
import { parseYamlTree } from "./yaml_tree.ts";

export { type Diagnostic, formatDiagnostic } from "./diagnostics.ts";

/** Largest policy file accepted (a 100,000-rule file is about 15 MiB). */
export const MAX_POLICY_FILE_BYTES = 64 * 1024 * 1024;

/** The outcome of loading a policy file. Errors and warnings are each sorted by position. */
export type LoadResult =
  | {
    ok: true;
    set: PolicySet;
    warnings: Diagnostic[];
    /** Each policy of `set` compiled (absent with `compile: false`). */
    compiled?: CompiledPolicy[];
    /** The name given to the text (the path for files). */
    source: string;
  }
  | { ok: false; errors: Diagnostic[]; warnings: Diagnostic[]; source: string };

/** Options of {@link parsePolicyText} and {@link loadPolicyFile}. */
export interface LoadOptions {
  /**
   * Compile every policy (default true): finds policies too large for the
   * maps (errors) and shadowed rules (warnings), and returns the compiled
   * policies so they need not be compiled again.
   */
  compile?: boolean;
}

/** Parses and validates a policy file's text. `source` names it in the result. */
export function parsePolicyText(
  text: string,
  source = "<text>",
  options: LoadOptions = {},
): LoadResult {
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const report = new Reporter(text);
  const tree = parseYamlTree(text, WORDS);
  for (const p of tree.problems) {
    if (p.severity === "error") report.error(p.offset, {}, undefined, p.message);
    else report.warn(p.offset, {}, undefined, p.message);
  }
  let compiled: CompiledPolicy[] | null | undefined;
  const validated = report.errorCount === 0 ? validateTree(tree.root, report) : null;
  if (validated) {
    lintSet(validated, report);
    if (options.compile ?? true) compiled = compileSet(validated, report);
  }
  const { errors, warnings } = report.finish();
  if (errors.length > 0 || !validated) return { ok: false, errors, warnings, source };
  const result: LoadResult = { ok: true, set: validated.set, warnings, source };
  if (compiled) result.compiled = compiled;
  return result;
}

/**
 * Every diagnostic of a result, errors and warnings together, in file order
 * (the order `tinyfw check` prints them in).
 */
export function diagnosticsOf(result: LoadResult): Diagnostic[] {
  const all = result.ok ? [...result.warnings] : [...result.errors, ...result.warnings];
  return all.sort(compareDiagnostics);
}

/** Reads, parses and validates the policy file at `path`. Never throws for a bad file. */
export function loadPolicyFile(path: string, options: LoadOptions = {}): LoadResult {
  const fail = (message: string): LoadResult => ({
    ok: false,
    errors: [{ severity: "error", message }],
    warnings: [],
    source: path,
  });
  let bytes: Uint8Array;
  try {
    const info = Deno.statSync(path);
    if (info.isDirectory) return fail("cannot read the policy file: it is a directory");
    if (info.size > MAX_POLICY_FILE_BYTES) {
      return fail(
        `the policy file is ${info.size} bytes; at most ${MAX_POLICY_FILE_BYTES} are accepted`,
      );
    }
    bytes = Deno.readFileSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      return fail("cannot read the policy file: it does not exist");
    }
    if (e instanceof Deno.errors.PermissionDenied) {
      return fail(
        "cannot read the policy file: permission denied (run as a user that can read it)",
      );
    }
    return fail(`cannot read the policy file: ${(e as Error).message}`);
  }
  if ((bytes[0] === 0xff && bytes[1] === 0xfe) || (bytes[0] === 0xfe && bytes[1] === 0xff)) {
    return fail("the policy file is UTF-16 text: save it as UTF-8");
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return fail("the policy file is not UTF-8 text");
  }
  return parsePolicyText(text, path, options);
}
