/**
 * The capacity contract of a policy file (docs/POLICY.md, "Limits"): what
 * `tinyfw check` accepts, stated as numbers. Every file within these limits
 * is validated in bounded time and memory, compiles into the data plane's
 * maps, and can be reloaded into any other such file: the maps are sized
 * for two files at the limits at once (the policy in force and the new one,
 * side by side during the switch; `lib/abi/layout.ts`).
 *
 * The limits on compiled entries are per file, all policies and both
 * directions together, and are defined beside the map sizes in
 * `lib/abi/layout.ts` (`FILE_MAX_*`).
 *
 * @module
 */

/** Largest policy file read (a 100,000-rule file is 10–25 MiB). */
export const MAX_POLICY_FILE_BYTES = 32 * 1024 * 1024;

/**
 * Most YAML nodes a file may hold, counting every key, value, list item and
 * collection, with aliases expanded. It bounds the parser's memory: the file
 * is refused before parsing when even an upper bound of its nodes, counted
 * from its separators, is above it. A 100,000-rule file has 1.3–2 million.
 */
export const MAX_YAML_NODES = 3_000_000;

/** Deepest nesting of YAML collections (a policy file needs 6 levels). */
export const MAX_YAML_DEPTH = 64;

/** Most policies in one file. */
export const MAX_POLICIES = 1_000;

/** Most rules in one file, all policies together. */
export const MAX_RULES = 100_000;

/** Most entries of `cidrs` lists in one file, all rules together, aliases expanded. */
export const MAX_CIDRS = 250_000;

/** Most errors (and most warnings) reported for one file; the rest are counted in one line. */
export const MAX_DIAGNOSTICS = 1_000;

/** Longest string shown whole in a message; longer ones are cut. */
export const MAX_SHOWN_CHARS = 80;
