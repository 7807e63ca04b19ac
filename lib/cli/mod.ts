/**
 * The command line (SPEC §2): `tinyfw [run] [options]`, `tinyfw check`,
 * `explain`, `status`, `detach`, `help`, `--help` and `--version`, parsed
 * into one typed command (parse.ts) from one option table (options.ts), with
 * its help rendered from the same table (help.ts).
 *
 * @module
 */

export * from "./types.ts";
export { helpText, versionText } from "./help.ts";
export { ipFamily, parseCommandLine } from "./parse.ts";
