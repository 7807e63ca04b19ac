/**
 * Validation of a policy file's tree: the schema field by field, the
 * vocabulary and its suggestions, lints across rules and policies, and the
 * diagnostics with their locations.
 *
 * @module
 */

export { compareDiagnostics, type Diagnostic, formatDiagnostic } from "./diagnostics.ts";
export { WORDS } from "./keys.ts";
export { lintSet, ruleWhere } from "./lint.ts";
export { Reporter } from "./report.ts";
export { type ValidatedSet, validateTree } from "./schema.ts";
