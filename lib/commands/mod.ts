/**
 * The subcommands besides `run`: `check`'s summary, `explain`, `status`,
 * `detach`, and the privilege check they share.
 *
 * @module
 */

export { summarize } from "./check.ts";
export { detach, formatDetach } from "./detach.ts";
export { explain, formatExplanation } from "./explain.ts";
export { requireBpfPrivileges } from "./privileges.ts";
export { formatStatus, status, statusJson } from "./status.ts";
