/**
 * Loading a policy file (SPEC §3.1): read, parse the YAML, validate the
 * schema, look for likely mistakes, compile every policy. Every error of the
 * file is reported, each with its location (see `diagnostics.ts`); the
 * result carries the typed `PolicySet`, ready for selection and the data
 * plane, only when there is none.
 *
 * This is the one reader of policy files: `check`, `explain`, the agent's
 * start and every reload call {@link loadPolicyFile}, so a file is accepted
 * or refused alike by all of them, with the same messages.
 *
 * Stages, each reporting everything it finds:
 * 1. the file: a regular file (not a directory, FIFO or device), read up to
 *    {@link MAX_POLICY_FILE_BYTES}, UTF-8 (a BOM is dropped);
 * 2. YAML syntax (the first error; the later stages need a parsed file);
 * 3. schema: the file's size in policies, rules and CIDRs (`limits.ts`),
 *    types, values, unknown keys, duplicates (`schema.ts`), with the
 *    warnings about one field or one rule;
 * 4. only for a file without errors: warnings that compare rules and
 *    policies (`lint.ts`), then compiling each policy: a file that does not
 *    fit the maps is an error, a rule that never decides a packet a warning
 *    (`compile/compile_set.ts`).
 *
 * @module
 */

import { ConfigError } from "../base/mod.ts";
import { type CompiledPolicy, compileSet } from "./compile/mod.ts";
import {
  compareDiagnostics,
  type Diagnostic,
  formatDiagnostic,
  lintSet,
  Reporter,
  validateTree,
  WORDS,
} from "./validate/mod.ts";
export { type Diagnostic, formatDiagnostic } from "./validate/mod.ts";
import { MAX_POLICY_FILE_BYTES, type PolicySet } from "./model/mod.ts";
export { MAX_POLICY_FILE_BYTES } from "./model/mod.ts";
import { parseYamlTree } from "./yaml/mod.ts";

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
    /** The text that was loaded. */
    text: string;
  }
  | {
    ok: false;
    errors: Diagnostic[];
    warnings: Diagnostic[];
    source: string;
    /** The text, when the file could be read. */
    text?: string;
  };

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
  const original = text;
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
  if (errors.length > 0 || !validated) {
    return { ok: false, errors, warnings, source, text: original };
  }
  const result: LoadResult = { ok: true, set: validated.set, warnings, source, text: original };
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

/** A valid file: its policies, in the same order their compiled forms, and its text. */
export interface ValidFile {
  set: PolicySet;
  compiled?: CompiledPolicy[];
  text: string;
}

/**
 * What a command does with a loaded file: each warning goes to `warn` (one
 * line each), and an invalid file throws a ConfigError (exit code 2): one
 * sentence for a file that cannot be read, else a sentence with every error
 * as a detail line. `consequence` ends that sentence ("nothing was attached").
 */
export function requireValid(
  result: LoadResult,
  warn: (line: string) => void,
  consequence?: string,
): ValidFile {
  const file = result.source;
  for (const w of result.warnings) warn(formatDiagnostic(w, file));
  if (result.ok) return { set: result.set, compiled: result.compiled, text: result.text };
  const [first] = result.errors;
  const end = consequence ? `; ${consequence}.` : ".";
  if (result.errors.length === 1 && first.line === undefined) {
    const m = fileError(first, file);
    throw new ConfigError(`${m.charAt(0).toUpperCase()}${m.slice(1)}${end}`);
  }
  const n = result.errors.length;
  throw new ConfigError(
    `The policy file ${file} is not valid (${n} ${n === 1 ? "error" : "errors"})${end}`,
    { details: result.errors.map((e) => formatDiagnostic(e, file)) },
  );
}

/**
 * An error about the file as a whole ("cannot read the policy file: it does
 * not exist", "the policy file is UTF-16 text...") as a sentence naming it:
 * "cannot read the policy file /etc/p.yaml: it does not exist".
 */
export function fileError(d: Diagnostic, file: string): string {
  return d.message.replace("the policy file", `the policy file ${file}`);
}

/** Reads, parses and validates the policy file at `path`. Never throws for a bad file. */
export function loadPolicyFile(path: string, options: LoadOptions = {}): LoadResult {
  const read = readPolicyFile(path);
  if (!read.ok) return { ok: false, errors: [read.error], warnings: [], source: path };
  return parsePolicyText(read.text, path, options);
}

/** The text of a policy file, or the one error saying why it cannot be had. */
export type ReadResult = { ok: true; text: string } | { ok: false; error: Diagnostic };

/**
 * Reads the policy file at `path` (symbolic links followed): only a regular
 * file, at most {@link MAX_POLICY_FILE_BYTES} (checked while reading, so a
 * file that grows is cut off too), UTF-8 text.
 */
export function readPolicyFile(path: string): ReadResult {
  const fail = (message: string): ReadResult => ({
    ok: false,
    error: { severity: "error", message },
  });
  const tooLarge = (size: string) =>
    fail(`the policy file is ${size} bytes; at most ${MAX_POLICY_FILE_BYTES} are accepted`);
  let bytes: Uint8Array;
  try {
    // Looked at before opening: opening a FIFO for reading waits for a writer.
    const info = Deno.statSync(path);
    const kind = notRegular(info);
    if (kind) return fail(`cannot read the policy file: it is ${kind}, not a regular file`);
    if (info.size > MAX_POLICY_FILE_BYTES) return tooLarge(String(info.size));
    const file = Deno.openSync(path, { read: true });
    try {
      const again = notRegular(file.statSync());
      if (again) return fail(`cannot read the policy file: it is ${again}, not a regular file`);
      const r = readAtMost(file, MAX_POLICY_FILE_BYTES);
      if (!r) return tooLarge(`more than ${MAX_POLICY_FILE_BYTES}`);
      bytes = r;
    } finally {
      file.close();
    }
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
  try {
    return { ok: true, text: new TextDecoder("utf-8", { fatal: true }).decode(bytes) };
  } catch {
    return fail("the policy file is not UTF-8 text");
  }
}

/** What a file that is not a regular file is ("a directory", "a FIFO"...), or undefined. */
function notRegular(info: Deno.FileInfo): string | undefined {
  if (info.isFile) return undefined;
  if (info.isDirectory) return "a directory";
  if (info.isFifo) return "a FIFO";
  if (info.isCharDevice) return "a character device";
  if (info.isBlockDevice) return "a block device";
  if (info.isSocket) return "a socket";
  return "not a file";
}

/** The whole file if it has at most `max` bytes, else null. */
function readAtMost(file: Deno.FsFile, max: number): Uint8Array | null {
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const buf = new Uint8Array(Math.min(1 << 20, max + 1 - total));
    const n = file.readSync(buf);
    if (n === null || n === 0) break;
    chunks.push(n === buf.length ? buf : buf.subarray(0, n));
    total += n;
    if (total > max) return null;
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}
