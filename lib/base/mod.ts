/**
 * What every layer uses: the errors that end a command and their exit codes,
 * logging, the version, and "did you mean" suggestions.
 *
 * @module
 */

export {
  ConfigError,
  describeError,
  EXIT_OK,
  exitCodeOf,
  RuntimeError,
  UsageError,
} from "./errors.ts";
export {
  getLogger,
  LOG_FORMATS,
  LOG_LEVELS,
  type LogFormat,
  type Logger,
  type LogLevel,
  setupLogging,
} from "./log.ts";
export { editDistance } from "./suggest.ts";
export { VERSION } from "./version.ts";
