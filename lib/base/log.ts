/**
 * Logging: LogTape configured once per process, written to stderr, one record
 * per line, as text or JSON.
 *
 * Text: `2026-11-25T22:00:00.000Z INFO  attached iface=eth0 mode=native`
 * JSON: `{"timestamp":"...","level":"info","category":"tinyfw.agent","message":"attached","iface":"eth0"}`
 *
 * Log with a short message and structured properties:
 * `getLogger("agent").info("attached", { iface, mode })`. Placeholders such as
 * `"attached {iface}"` are filled in from the properties; in text format a
 * property used by a placeholder is not repeated as `key=value`.
 *
 * @module
 */

import {
  configureSync,
  getLogger as logtapeLogger,
  type Logger,
  type LogLevel as LogtapeLevel,
  type LogRecord,
} from "@logtape/logtape";

/** The log levels an operator chooses from (`--log-level`, `TINYFW_LOG`). */
export type LogLevel = "debug" | "info" | "warn" | "error";
/** The log line formats (`--log-format`). */
export type LogFormat = "text" | "json";
/** Every {@link LogLevel}, most verbose first. */
export const LOG_LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error"];
/** Every {@link LogFormat}. */
export const LOG_FORMATS: readonly LogFormat[] = ["text", "json"];

export type { Logger };

/** How {@link setupLogging} configures logging. */
export interface LoggingOptions {
  /** The least severe level written. */
  readonly level: LogLevel;
  /** Text or JSON lines. */
  readonly format: LogFormat;
  /** Where finished lines (with their newline) go; stderr by default. For tests. */
  readonly write?: (line: string) => void;
}

/** The root category: every tinyfw logger is below it. */
const ROOT = "tinyfw";

const TO_LOGTAPE: Record<LogLevel, LogtapeLevel> = {
  debug: "debug",
  info: "info",
  warn: "warning",
  error: "error",
};

const LEVEL_NAME: Record<LogtapeLevel, string> = {
  trace: "trace",
  debug: "debug",
  info: "info",
  warning: "warn",
  error: "error",
  fatal: "fatal",
};

/**
 * Configures logging for the whole process; calling it again replaces the
 * previous configuration (e.g. after the command line is parsed).
 */
export function setupLogging(options: LoggingOptions): void {
  const write = options.write ?? writeStderr;
  const format = options.format === "json" ? formatJson : formatText;
  configureSync({
    reset: true,
    sinks: { out: (record: LogRecord) => write(format(record) + "\n") },
    loggers: [
      { category: [ROOT], sinks: ["out"], lowestLevel: TO_LOGTAPE[options.level] },
      // LogTape's own diagnostics: only problems, and in our format.
      { category: ["logtape", "meta"], sinks: ["out"], lowestLevel: "warning" },
    ],
  });
}

/**
 * The logger for one part of tinyfw, e.g. `getLogger("agent")` or
 * `getLogger(["containerd", "events"])`; its category is prefixed with "tinyfw".
 */
export function getLogger(category: string | readonly string[] = []): Logger {
  const parts = typeof category === "string" ? [category] : [...category];
  return logtapeLogger([ROOT, ...parts]);
}

/** One record as a text line (no newline): time, level, message, then `key=value` pairs. */
export function formatText(record: LogRecord): string {
  const level = LEVEL_NAME[record.level].toUpperCase().padEnd(5);
  let line = `${new Date(record.timestamp).toISOString()} ${level} ${renderMessage(record)}`;
  const used = placeholders(record.rawMessage);
  for (const [key, value] of Object.entries(record.properties)) {
    if (value === undefined || used.has(key)) continue;
    line += ` ${key}=${textValue(value)}`;
  }
  return line;
}

/**
 * One record as a JSON object on one line (no newline): timestamp, level,
 * category, message, then the properties (a property that would overwrite
 * one of those four keys is written with a leading underscore).
 */
export function formatJson(record: LogRecord): string {
  const out: Record<string, unknown> = {
    timestamp: new Date(record.timestamp).toISOString(),
    level: LEVEL_NAME[record.level],
    category: record.category.join("."),
    message: renderMessage(record),
  };
  for (const [key, value] of Object.entries(record.properties)) {
    out[key in out ? `_${key}` : key] = value;
  }
  return JSON.stringify(out, jsonReplacer);
}

function renderMessage(record: LogRecord): string {
  let text = "";
  record.message.forEach((part, i) => {
    text += i % 2 === 0 ? String(part) : plainValue(part);
  });
  return text;
}

function placeholders(raw: string | TemplateStringsArray): Set<string> {
  if (typeof raw !== "string") return new Set();
  return new Set([...raw.matchAll(/\{([^{}]+)\}/g)].map((m) => m[1].trim()));
}

/** A value inside a message: strings bare, the rest as in `key=value`. */
function plainValue(value: unknown): string {
  return typeof value === "string" ? value : textValue(value);
}

/** A value in a `key=value` pair: bare when unambiguous, JSON-quoted otherwise. */
function textValue(value: unknown): string {
  if (typeof value === "string") {
    return /^[^\s"=\\]+$/.test(value) && !hasControl(value) ? value : JSON.stringify(value);
  }
  if (value instanceof Error) return JSON.stringify(value.message);
  if (value === null || typeof value !== "object") return String(value);
  return JSON.stringify(value, jsonReplacer);
}

function hasControl(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

function jsonReplacer(_key: string, value: unknown): unknown {
  if (typeof value === "bigint") {
    return Number.isSafeInteger(Number(value)) ? Number(value) : value.toString();
  }
  if (value instanceof Error) return { name: value.name, message: value.message };
  if (value instanceof Map) return Object.fromEntries(value);
  if (value instanceof Set) return [...value];
  return value;
}

const encoder = new TextEncoder();

function writeStderr(line: string): void {
  const bytes = encoder.encode(line);
  let done = 0;
  while (done < bytes.length) done += Deno.stderr.writeSync(bytes.subarray(done));
}
