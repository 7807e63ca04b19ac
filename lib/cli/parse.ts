/**
 * argv to one {@link Command}: {@link parseCommandLine} fills in every
 * default or throws a {@link UsageError} (exit code 2) whose message names
 * the bad flag and points at `--help`. It does no I/O besides reading
 * `TINYFW_LOG`; whether files, interfaces or sockets exist is checked later.
 *
 * @module
 */

import { parseArgs } from "node:util";
import type { HostPort } from "../net/mod.ts";
import { editDistance, LOG_FORMATS, LOG_LEVELS, type LogLevel, UsageError } from "../base/mod.ts";
import { parseIp } from "../net/mod.ts";
import { ifnameProblem, isNamespaceName } from "../policy/mod.ts";
import { helpText, versionText } from "./help.ts";
import {
  COMMANDS,
  LOG_OPTS,
  META_OPTS,
  type OptionName,
  OPTIONS,
  type OptionSpec,
  PARSE_ARGS_OPTIONS,
} from "./options.ts";
import {
  type CheckCommand,
  type Command,
  DEFAULT_CONTAINERD_SOCKET,
  DEFAULT_PIN_PATH,
  type ExplainCommand,
  LOG_LEVEL_ENV,
  type LogOptions,
  PACKET_DIRECTIONS,
  PACKET_PROTOS,
  type ParseOptions,
  type RunCommand,
  type Subcommand,
  SUBCOMMANDS,
  XDP_MODES,
} from "./types.ts";

/**
 * Parses the command line (without the program name) into a {@link Command}.
 *
 * @throws {UsageError} unknown command or option, missing or invalid value,
 *   missing required option, options that do not go together.
 */
export function parseCommandLine(args: readonly string[], options: ParseOptions = {}): Command {
  const { cmd, implied, rest } = subcommandOf(args);
  const seeHelp = implied ? "see 'tinyfw --help'" : `see 'tinyfw ${cmd} --help'`;
  const usage = (msg: string) => new UsageError(`${msg}; ${seeHelp}`);
  const read = readOptions(cmd, rest, usage);

  if (cmd === "help") return helpCommand(read, usage);
  if (read.wantHelp) return { cmd: "help", text: helpText(implied ? undefined : cmd) };
  if (read.wantVersion) return { cmd: "version", text: versionText() };
  if (read.firstError) throw read.firstError;
  if (read.positionals.length > 0) {
    const p = read.positionals[0];
    const hint = cmd === "run" && !p.startsWith("-") && ifnameProblem(p) === undefined
      ? ` (to filter an interface, use --iface ${p})`
      : "";
    throw usage(`unexpected argument '${p}'${hint}`);
  }

  const o = new Given(read, usage);
  const log: LogOptions = {
    logLevel: resolveLogLevel(o.one("log-level"), options.env ?? readEnv, usage),
    logFormat: o.choice("log-format", LOG_FORMATS, "text"),
  };
  switch (cmd) {
    case "run":
      return dropUndefined(parseRun(o, log));
    case "check":
      return dropUndefined<CheckCommand>({ cmd: "check", policy: o.one("policy"), ...log });
    case "explain":
      return dropUndefined(parseExplain(o, log));
    case "status":
      return {
        cmd: "status",
        json: o.has("json"),
        pinPath: pinPath(o.one("pin-path"), usage),
        ...log,
      };
    case "detach":
      return { cmd: "detach", pinPath: pinPath(o.one("pin-path"), usage), ...log };
  }
}

/** The subcommand (`run` when the line starts with an option) and the arguments after it. */
function subcommandOf(args: readonly string[]): {
  cmd: Subcommand;
  implied: boolean;
  rest: string[];
} {
  const rest = [...args];
  if (rest.length === 0) {
    throw new UsageError(
      "nothing to do: give --iface NAME and/or --cmode to run the agent, or a command; see 'tinyfw --help'",
    );
  }
  const first = rest[0];
  if ((SUBCOMMANDS as readonly string[]).includes(first)) {
    return { cmd: rest.shift() as Subcommand, implied: false, rest };
  }
  if (first.startsWith("-") && first !== "-") return { cmd: "run", implied: true, rest };
  const hint = first === "version"
    ? " (did you mean --version?)"
    : didYouMean(first, SUBCOMMANDS, "");
  throw new UsageError(`unknown command '${first}'${hint}; see 'tinyfw --help'`);
}

type Usage = (msg: string) => UsageError;

/** What the options of one command line said, before their values are checked. */
interface ReadOptions {
  values: Map<OptionName, string[]>;
  flags: Set<OptionName>;
  positionals: string[];
  /** The first problem, reported unless --help or --version wins. */
  firstError?: UsageError;
  wantHelp: boolean;
  wantVersion: boolean;
}

/** Reads every option of `cmd` from `args`: unknown, misplaced, repeated or valueless ones noted. */
function readOptions(cmd: Subcommand, args: string[], usage: Usage): ReadOptions {
  const allowed = new Set<string>(
    cmd === "help" ? ["help"] : [...COMMANDS[cmd].options, ...LOG_OPTS, ...META_OPTS],
  );
  const { tokens } = parseArgs({
    args,
    options: PARSE_ARGS_OPTIONS,
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  const read: ReadOptions = {
    values: new Map(),
    flags: new Set(),
    positionals: [],
    wantHelp: false,
    wantVersion: false,
  };
  const fail = (msg: string) => {
    read.firstError ??= usage(msg);
  };
  for (const token of tokens) {
    if (token.kind === "positional") {
      read.positionals.push(token.value);
      continue;
    }
    if (token.kind !== "option") continue; // the "--" terminator
    const raw = token.rawName;
    if (!Object.hasOwn(OPTIONS, token.name)) {
      const hint = raw.startsWith("--")
        ? didYouMean(raw, [...allowed].map((n) => `--${n}`), "")
        : "";
      fail(`unknown option ${raw}${hint}`);
      continue;
    }
    const name = token.name as OptionName;
    if (name === "help") {
      if (token.value !== undefined) fail(`${raw} takes no value (got '${token.value}')`);
      else read.wantHelp = true;
      continue;
    }
    if (!allowed.has(name)) {
      fail(`${raw} is not an option of 'tinyfw ${cmd}'`);
      continue;
    }
    const spec: OptionSpec = OPTIONS[name];
    if (spec.type === "boolean") {
      if (token.value !== undefined) fail(`${raw} takes no value (got '${token.value}')`);
      else if (name === "version") read.wantVersion = true;
      else read.flags.add(name);
      continue;
    }
    const value = token.value;
    if (value === undefined || value === "" || (!token.inlineValue && looksLikeOption(value))) {
      if (value === "--help" || value === "-h") read.wantHelp = true;
      fail(`${raw} needs a value: ${raw} ${spec.arg}`);
      continue;
    }
    const list = read.values.get(name) ?? [];
    if (list.length > 0 && !spec.multiple) {
      fail(`${raw} was given more than once; give it once`);
      continue;
    }
    list.push(value);
    read.values.set(name, list);
  }
  return read;
}

/** `tinyfw help [COMMAND]`. */
function helpCommand(read: ReadOptions, usage: Usage): Command {
  if (read.wantHelp) return { cmd: "help", text: helpText() };
  if (read.firstError) throw read.firstError;
  if (read.positionals.length > 1) throw usage(`unexpected argument '${read.positionals[1]}'`);
  const topic = read.positionals[0];
  if (topic === undefined) return { cmd: "help", text: helpText() };
  if (!(SUBCOMMANDS as readonly string[]).includes(topic)) {
    throw usage(`unknown command '${topic}'${didYouMean(topic, SUBCOMMANDS, "")}`);
  }
  return { cmd: "help", text: helpText(topic as Subcommand) };
}

/** The options given, read by name; `usage` makes the error of a bad value. */
class Given {
  constructor(readonly read: ReadOptions, readonly usage: Usage) {}

  one(name: OptionName): string | undefined {
    return this.read.values.get(name)?.[0];
  }

  many(name: OptionName): string[] {
    return [...new Set(this.read.values.get(name) ?? [])];
  }

  has(name: OptionName): boolean {
    return this.read.flags.has(name);
  }

  /** The value of `name`, one of `choices`, or `def` when absent. */
  choice<T extends string>(name: OptionName, choices: readonly T[], def: T): T {
    const v = this.one(name);
    if (v === undefined) return def;
    if (!(choices as readonly string[]).includes(v)) {
      throw this.usage(`--${name} must be ${orList(choices)}, not '${v}'`);
    }
    return v as T;
  }
}

function parseRun(o: Given, log: LogOptions): RunCommand {
  const usage = o.usage;
  // Every value is checked before what is missing, so a bad value is named
  // even when --iface and --cmode are absent too.
  const ifaces = o.many("iface");
  for (const iface of ifaces) {
    const problem = ifnameProblem(iface);
    if (problem) throw usage(`--iface '${iface}' is not an interface name: ${problem}`);
  }
  const namespaces = o.many("namespace");
  for (const ns of namespaces) {
    if (!isNamespaceName(ns)) {
      throw usage(
        `--namespace '${ns}' is not a containerd namespace name (letters and digits joined ` +
          "by '.', '_' or '-')",
      );
    }
  }
  const xdpMode = o.choice("xdp-mode", XDP_MODES, "auto");
  const metrics = o.one("metrics-addr");
  const metricsAddr = metrics === undefined ? undefined : parseHostPort(metrics, usage);
  const pin = pinPath(o.one("pin-path"), usage);
  const socket = o.one("containerd-socket")?.replace(/^unix:\/\//, "");
  if (socket === "") throw usage("--containerd-socket needs a path");
  const cmode = o.has("cmode");
  if (!cmode && (socket !== undefined || namespaces.length > 0)) {
    const flag = socket !== undefined ? "--containerd-socket" : "--namespace";
    throw usage(`${flag} only applies with --cmode; add --cmode or drop ${flag}`);
  }
  if (ifaces.length === 0 && !cmode) {
    throw usage("tinyfw run needs --iface NAME or --cmode (or both)");
  }
  return {
    cmd: "run",
    ifaces,
    cmode,
    policy: o.one("policy"),
    xdpMode,
    containerdSocket: socket ?? DEFAULT_CONTAINERD_SOCKET,
    namespaces,
    metricsAddr,
    pinPath: pin,
    keepOnExit: o.has("keep-on-exit"),
    audit: o.has("audit"),
    ...log,
  };
}

function parseExplain(o: Given, log: LogOptions): ExplainCommand {
  const { usage } = o;
  const protoValue = o.one("proto");
  if (protoValue === undefined) {
    throw usage(`tinyfw explain needs --proto P (${orList(PACKET_PROTOS)})`);
  }
  const proto = o.choice("proto", PACKET_PROTOS, "tcp");
  const src = o.one("src");
  const dst = o.one("dst");
  const srcFamily = src === undefined ? undefined : ipFamily(src);
  const dstFamily = dst === undefined ? undefined : ipFamily(dst);
  if (src !== undefined && srcFamily === undefined) {
    throw usage(`--src '${src}' is not an IPv4 or IPv6 address`);
  }
  if (dst !== undefined && dstFamily === undefined) {
    throw usage(`--dst '${dst}' is not an IPv4 or IPv6 address`);
  }
  if (srcFamily !== undefined && dstFamily !== undefined && srcFamily !== dstFamily) {
    throw usage("--src and --dst must both be IPv4 or both be IPv6");
  }
  const family = srcFamily ?? dstFamily ?? (proto === "icmpv6" ? 6 : 4);
  if (proto === "icmp" && family === 6) {
    throw usage("--proto icmp is ICMP for IPv4; use --proto icmpv6 with IPv6 addresses");
  }
  if (proto === "icmpv6" && family === 4) {
    throw usage("--proto icmpv6 is ICMP for IPv6; use --proto icmp with IPv4 addresses");
  }
  const hasPorts = proto === "tcp" || proto === "udp" || proto === "sctp";
  const port = (name: "sport" | "dport"): number | undefined => {
    const v = o.one(name);
    if (v === undefined) return undefined;
    if (!hasPorts) throw usage(`--${name} applies only to --proto tcp, udp or sctp`);
    const n = parseUint(v, 65535);
    if (n === undefined) throw usage(`--${name} must be a port number 0-65535, not '${v}'`);
    return n;
  };
  const icmp = (name: "icmp-type" | "icmp-code"): number | undefined => {
    const v = o.one(name);
    if (v === undefined) return undefined;
    if (hasPorts) throw usage(`--${name} applies only to --proto icmp or icmpv6`);
    const n = parseUint(v, 255) ??
      (name === "icmp-type" ? ICMP_TYPES[proto as "icmp" | "icmpv6"][v] : undefined);
    if (n === undefined) {
      const names = name === "icmp-type"
        ? ` or one of ${Object.keys(ICMP_TYPES[proto as "icmp" | "icmpv6"]).join(", ")}`
        : "";
      throw usage(`--${name} must be a number 0-255${names}, not '${v}'`);
    }
    return n;
  };
  const name = o.one("name");
  return {
    cmd: "explain",
    policy: o.one("policy"),
    name,
    proto,
    family,
    src,
    dst,
    sport: port("sport"),
    dport: port("dport"),
    direction: o.choice("direction", PACKET_DIRECTIONS, "ingress"),
    icmpType: icmp("icmp-type"),
    icmpCode: icmp("icmp-code"),
    json: o.has("json"),
    ...log,
  };
}

/** ICMP type names `--icmp-type` accepts, per protocol. */
const ICMP_TYPES: Record<"icmp" | "icmpv6", Record<string, number>> = {
  icmp: {
    "echo-reply": 0,
    "dest-unreachable": 3,
    "redirect": 5,
    "echo-request": 8,
    "time-exceeded": 11,
    "parameter-problem": 12,
  },
  icmpv6: {
    "dest-unreachable": 1,
    "packet-too-big": 2,
    "time-exceeded": 3,
    "parameter-problem": 4,
    "echo-request": 128,
    "echo-reply": 129,
    "router-solicitation": 133,
    "router-advertisement": 134,
    "neighbor-solicitation": 135,
    "neighbor-advertisement": 136,
    "redirect": 137,
  },
};

function resolveLogLevel(
  flag: string | undefined,
  env: (name: string) => string | undefined,
  usage: Usage,
): LogLevel {
  if (flag !== undefined) {
    const level = flag.toLowerCase();
    if (!(LOG_LEVELS as readonly string[]).includes(level)) {
      throw usage(`--log-level must be ${orList(LOG_LEVELS)}, not '${flag}'`);
    }
    return level as LogLevel;
  }
  const fromEnv = env(LOG_LEVEL_ENV)?.trim();
  if (fromEnv === undefined || fromEnv === "") return "info";
  const level = fromEnv.toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw new UsageError(
      `${LOG_LEVEL_ENV}='${fromEnv}' is not a log level; set it to ${
        orList(LOG_LEVELS)
      }, or unset it`,
    );
  }
  return level as LogLevel;
}

function pinPath(value: string | undefined, usage: Usage): string {
  if (value === undefined) return DEFAULT_PIN_PATH;
  if (!value.startsWith("/")) {
    throw usage(
      `--pin-path must be an absolute path on bpffs (e.g. ${DEFAULT_PIN_PATH}), not '${value}'`,
    );
  }
  return value.length > 1 ? value.replace(/\/+$/, "") || "/" : value;
}

function parseHostPort(value: string, usage: Usage): HostPort {
  const m = /^(?:\[([^\]]*)\]|([^:\[\]]*)):([^:]*)$/.exec(value);
  if (!m) {
    throw usage(
      value.split(":").length > 2
        ? `--metrics-addr must be HOST:PORT with an IPv6 host in brackets (e.g. [::1]:9476), not '${value}'`
        : `--metrics-addr must be HOST:PORT (e.g. 127.0.0.1:9476, or :9476 for every address), not '${value}'`,
    );
  }
  const [, v6, host, portText] = m;
  const port = parseUint(portText, 65535);
  if (port === undefined) {
    throw usage(`--metrics-addr port must be a number 0-65535, not '${portText}'`);
  }
  if (v6 !== undefined) {
    if (ipFamily(v6) !== 6) throw usage(`--metrics-addr host '[${v6}]' is not an IPv6 address`);
    return { hostname: v6, port };
  }
  if (host === "") return { hostname: "0.0.0.0", port };
  if (/^[0-9.]+$/.test(host) ? ipFamily(host) !== 4 : !isHostname(host)) {
    throw usage(`--metrics-addr host '${host}' is not a host name or IPv4 address`);
  }
  return { hostname: host, port };
}

// Small syntax checks

/** Parses a decimal integer 0..max (no sign, no leading zeros beyond "0"); undefined otherwise. */
function parseUint(text: string, max: number): number | undefined {
  if (!/^(0|[1-9][0-9]{0,9})$/.test(text)) return undefined;
  const n = Number(text);
  return n <= max ? n : undefined;
}

/** 4 or 6 when `text` is an IPv4 (dotted quad) or IPv6 address, else undefined. */
export function ipFamily(text: string): 4 | 6 | undefined {
  try {
    return parseIp(text).family;
  } catch {
    return undefined;
  }
}

function isHostname(name: string): boolean {
  return name.length <= 253 &&
    name.split(".").every((l) => /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(l));
}

function looksLikeOption(value: string): boolean {
  return /^--?[A-Za-z]/.test(value);
}

function orList(items: readonly string[]): string {
  return items.length === 1
    ? items[0]
    : `${items.slice(0, -1).join(", ")} or ${items[items.length - 1]}`;
}

function didYouMean(word: string, candidates: readonly string[], fallback: string): string {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = editDistance(word, c);
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  return best !== undefined && bestDistance <= 2 ? ` (did you mean ${best}?)` : fallback;
}

/** Removes keys whose value is undefined, so optional fields are absent, not undefined. */
function dropUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

function readEnv(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined; // no --allow-env: as if unset
  }
}
