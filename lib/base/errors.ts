/**
 * The errors that end a tinyfw command, and the exit code each one means
 * (SPEC §2): 0 success, 1 runtime failure, 2 usage or configuration error.
 *
 * Every message is one sentence that says what is wrong and what to do, so
 * `main.ts` prints `tinyfw: <message>` and exits with {@link exitCodeOf} —
 * never a stack trace.
 *
 * @module
 */

/** Exit code of a successful command. */
export const EXIT_OK = 0;
/** Exit code of a runtime failure (privileges, attach refused, kernel errors...). */
export const EXIT_RUNTIME = 1;
/** Exit code of a usage or configuration error (bad flag, invalid policy...). */
export const EXIT_USAGE = 2;

/** Options accepted by every tinyfw error. */
export interface TinyfwErrorOptions extends ErrorOptions {
  /**
   * Further lines shown after the message, e.g. every error of a policy file.
   * Each is a complete sentence on its own.
   */
  readonly details?: readonly string[];
}

/** Base class of the errors tinyfw reports to the operator. */
export abstract class TinyfwError extends Error {
  /** The process exit code this error maps to. */
  abstract readonly exitCode: number;
  /** Further lines shown after the message (may be empty). */
  readonly details: readonly string[];

  constructor(message: string, options: TinyfwErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.details = options.details ?? [];
  }
}

/** A bad command line: unknown flag or subcommand, missing or invalid value. Exit code 2. */
export class UsageError extends TinyfwError {
  readonly exitCode = EXIT_USAGE;
  constructor(message: string, options?: TinyfwErrorOptions) {
    super(message, options);
    this.name = "UsageError";
  }
}

/**
 * An invalid configuration: a policy file that does not parse or validate, an
 * interface that does not exist, a bad environment variable. Exit code 2.
 */
export class ConfigError extends TinyfwError {
  readonly exitCode = EXIT_USAGE;
  constructor(message: string, options?: TinyfwErrorOptions) {
    super(message, options);
    this.name = "ConfigError";
  }
}

/**
 * A failure while doing the work: missing privileges, bpffs not mounted, the
 * kernel refusing a program, containerd unreachable. Exit code 1.
 */
export class RuntimeError extends TinyfwError {
  readonly exitCode = EXIT_RUNTIME;
  constructor(message: string, options?: TinyfwErrorOptions) {
    super(message, options);
    this.name = "RuntimeError";
  }
}

/**
 * The exit code for an error that ended a command: the error's own code for a
 * {@link TinyfwError}, 1 for anything else (an unexpected failure is a runtime
 * failure, not a usage error).
 */
export function exitCodeOf(err: unknown): number {
  if (err instanceof TinyfwError) return err.exitCode;
  return EXIT_RUNTIME;
}

/**
 * The text to show the operator for an error: the message, then each detail
 * on its own line. For errors that are not {@link TinyfwError}s this is the
 * bare message (the stack stays for debug logs).
 */
export function describeError(err: unknown): string {
  if (err instanceof TinyfwError) {
    return [err.message, ...err.details.map((d) => `  ${d}`)].join("\n");
  }
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}
