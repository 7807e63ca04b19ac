/**
 * The command line (SPEC §2): `tinyfw [run] [options]`, `tinyfw check`,
 * `explain`, `status`, `detach`, `help`, `--help` and `--version`.
 *
 * {@link parseCommandLine} turns argv into one typed {@link Command} with every
 * default filled in, or throws a {@link UsageError} (exit code 2) whose message
 * names the bad flag and points at `--help`. It does no I/O besides reading
 * `TINYFW_LOG`; whether files, interfaces or sockets exist is checked later.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { UsageError } from "../base/errors.ts";
import { LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel } from "../base/log.ts";
import { ifnameProblem, isNamespaceName } from "../policy/model/names.ts";
import type { HostPort } from "../agent/metrics.ts";

import { VERSION } from "../base/version.ts";

export { VERSION } from "../base/version.ts";
/** Default `--pin-path`. */
export const DEFAULT_PIN_PATH = "/sys/fs/bpf/tinyfw";
/** Default `--containerd-socket`. */
export const DEFAULT_CONTAINERD_SOCKET = "/run/containerd/containerd.sock";
/** The environment variable that sets the log level when `--log-level` is absent. */
export const LOG_LEVEL_ENV = "TINYFW_LOG";

/** XDP attach mode (`--xdp-mode`). */
export type XdpMode = "auto" | "native" | "generic";
/** Every {@link XdpMode}. */
export const XDP_MODES: readonly XdpMode[] = ["auto", "native", "generic"];
/** Protocol of the packet `explain` builds (`--proto`). */
export type PacketProto = "tcp" | "udp" | "sctp" | "icmp" | "icmpv6";
/** Every {@link PacketProto}. */
export const PACKET_PROTOS: readonly PacketProto[] = ["tcp", "udp", "sctp", "icmp", "icmpv6"];
/** Direction of the packet `explain` builds (`--direction`). */
export type PacketDirection = "ingress" | "egress";
/** Every {@link PacketDirection}. */
export const PACKET_DIRECTIONS: readonly PacketDirection[] = ["ingress", "egress"];

export type { HostPort } from "../agent/metrics.ts";

/** Logging options, accepted by every command that does work. */
export interface LogOptions {
  /** `--log-level`, else `TINYFW_LOG`, else `info`. */
  readonly logLevel: LogLevel;
  /** `--log-format`, default `text`. */
  readonly logFormat: LogFormat;
}

/** `tinyfw [run] ...`: run the agent. */
export interface RunCommand extends LogOptions {
  readonly cmd: "run";
  /** `--iface`, in order, without duplicates. */
  readonly ifaces: readonly string[];
  /** `--cmode`: follow containerd. */
  readonly cmode: boolean;
  /** `--policy FILE`; absent: the built-in default policy. */
  readonly policy?: string;
  /** `--xdp-mode`, default `auto`. */
  readonly xdpMode: XdpMode;
  /** `--containerd-socket`, default {@link DEFAULT_CONTAINERD_SOCKET} (a `unix://` prefix is removed). */
  readonly containerdSocket: string;
  /** `--namespace`, in order, without duplicates; empty: every namespace. */
  readonly namespaces: readonly string[];
  /** `--metrics-addr HOST:PORT`; absent: no metrics endpoint. `:PORT` means 0.0.0.0. */
  readonly metricsAddr?: HostPort;
  /** `--pin-path`, default {@link DEFAULT_PIN_PATH}, without trailing slash. */
  readonly pinPath: string;
  /** `--keep-on-exit`: leave the filters enforcing when the agent exits. */
  readonly keepOnExit: boolean;
  /** `--audit`: count and log what would be dropped, drop nothing. */
  readonly audit: boolean;
}

/** `tinyfw check`: validate a policy file. */
export interface CheckCommand extends LogOptions {
  readonly cmd: "check";
  /** `--policy FILE`; absent: print the built-in default policy. */
  readonly policy?: string;
}

/** `tinyfw explain`: decide one packet with the real XDP program. */
export interface ExplainCommand extends LogOptions {
  readonly cmd: "explain";
  /** `--policy FILE`; absent: the built-in default policy. */
  readonly policy?: string;
  /** `--name POLICY`: which policy of the file decides. */
  readonly name?: string;
  /** `--proto` (required). */
  readonly proto: PacketProto;
  /** IP version of the packet: from `--src`/`--dst`, else 6 for icmpv6, else 4. */
  readonly family: 4 | 6;
  /** `--src IP`. */
  readonly src?: string;
  /** `--dst IP`. */
  readonly dst?: string;
  /** `--sport N` (tcp, udp, sctp only). */
  readonly sport?: number;
  /** `--dport N` (tcp, udp, sctp only). */
  readonly dport?: number;
  /** `--direction`, default `ingress`. */
  readonly direction: PacketDirection;
  /** `--icmp-type T` (icmp, icmpv6 only), a number or a name resolved for the protocol. */
  readonly icmpType?: number;
  /** `--icmp-code C` (icmp, icmpv6 only). */
  readonly icmpCode?: number;
  /** `--json`: print one JSON object. */
  readonly json: boolean;
}

/** `tinyfw status`: what the running (or a crashed) agent has attached. */
export interface StatusCommand extends LogOptions {
  readonly cmd: "status";
  /** `--json`: print one JSON object. */
  readonly json: boolean;
  /** `--pin-path`, where the agent's pins are. */
  readonly pinPath: string;
}

/** `tinyfw detach`: remove every filter and pin tinyfw left behind. */
export interface DetachCommand extends LogOptions {
  readonly cmd: "detach";
  /** `--pin-path`, where the pins are. */
  readonly pinPath: string;
}

/** `--help`, `-h` or `tinyfw help [COMMAND]`: print `text` (no trailing newline) to stdout, exit 0. */
export interface HelpCommand {
  readonly cmd: "help";
  readonly text: string;
}

/** `--version`: print `text` (`tinyfw <version>`) to stdout, exit 0. */
export interface VersionCommand {
  readonly cmd: "version";
  readonly text: string;
}

/** A parsed command line. */
export type Command =
  | RunCommand
  | CheckCommand
  | ExplainCommand
  | StatusCommand
  | DetachCommand
  | HelpCommand
  | VersionCommand;

/** The subcommands, in the order help lists them. */
export const SUBCOMMANDS = ["run", "check", "explain", "status", "detach", "help"] as const;
/** A subcommand name. */
export type Subcommand = typeof SUBCOMMANDS[number];

/** Options of {@link parseCommandLine}. */
export interface ParseOptions {
  /** Reads an environment variable; defaults to `Deno.env.get` (undefined without permission). */
  readonly env?: (name: string) => string | undefined;
}

/** `tinyfw <version>`, what `--version` prints. */
export function versionText(): string {
  return `tinyfw ${VERSION}`;
}

// ---------------------------------------------------------------------------
// Option table

interface OptionSpec {
  readonly type: "string" | "boolean";
  readonly multiple?: boolean;
  readonly short?: string;
  /** Placeholder for the value in help, e.g. NAME. */
  readonly arg?: string;
  readonly help: string;
  /** Shown in help as "(default: ...)". */
  readonly shown?: string;
}

const OPTIONS = {
  "iface": {
    type: "string",
    multiple: true,
    arg: "NAME",
    help: "attach to this interface; repeatable",
  },
  "cmode": {
    type: "boolean",
    help: "containers mode: follow containerd, filter every running and new container",
  },
  "policy": {
    type: "string",
    arg: "FILE",
    help: "policy file (YAML)",
    shown: "the built-in policy",
  },
  "xdp-mode": {
    type: "string",
    arg: "MODE",
    help: "auto|native|generic; auto tries native, falls back to generic",
    shown: "auto",
  },
  "containerd-socket": {
    type: "string",
    arg: "PATH",
    help: "containerd's socket (with --cmode)",
    shown: DEFAULT_CONTAINERD_SOCKET,
  },
  "namespace": {
    type: "string",
    multiple: true,
    arg: "NS",
    help: "containerd namespace to follow (with --cmode); repeatable",
    shown: "all",
  },
  "metrics-addr": {
    type: "string",
    arg: "HOST:PORT",
    help: "serve Prometheus metrics at http://HOST:PORT/metrics",
    shown: "off",
  },
  "pin-path": {
    type: "string",
    arg: "DIR",
    help: "bpffs directory for tinyfw's pins",
    shown: DEFAULT_PIN_PATH,
  },
  "keep-on-exit": {
    type: "boolean",
    help: "leave the filters enforcing when the agent exits (fail-closed); " +
      "default: detach cleanly on SIGINT/SIGTERM",
  },
  "audit": { type: "boolean", help: "count and log what would be dropped, drop nothing" },
  "name": { type: "string", arg: "POLICY", help: "the policy of the file that decides" },
  "proto": { type: "string", arg: "P", help: "tcp|udp|sctp|icmp|icmpv6 (required)" },
  "src": { type: "string", arg: "IP", help: "source address (IPv4 or IPv6)" },
  "dst": { type: "string", arg: "IP", help: "destination address (IPv4 or IPv6)" },
  "sport": { type: "string", arg: "N", help: "source port, 0-65535 (tcp, udp, sctp)" },
  "dport": { type: "string", arg: "N", help: "destination port, 0-65535 (tcp, udp, sctp)" },
  "direction": {
    type: "string",
    arg: "DIR",
    help: "ingress|egress: entering the interface or container, or leaving a container",
    shown: "ingress",
  },
  "icmp-type": {
    type: "string",
    arg: "T",
    help: "ICMP type, 0-255 or a name such as echo-request (icmp, icmpv6)",
  },
  "icmp-code": { type: "string", arg: "C", help: "ICMP code, 0-255 (icmp, icmpv6)" },
  "json": { type: "boolean", help: "print one JSON object" },
  "log-level": {
    type: "string",
    arg: "LEVEL",
    help: "debug|info|warn|error; env TINYFW_LOG sets the same",
    shown: "info",
  },
  "log-format": { type: "string", arg: "FORMAT", help: "text|json", shown: "text" },
  "help": { type: "boolean", short: "h", help: "show this help" },
  "version": { type: "boolean", help: "print the version" },
} as const satisfies Record<string, OptionSpec>;

type OptionName = keyof typeof OPTIONS;

/** The option table in the form node:util parseArgs takes. */
const PARSE_ARGS_OPTIONS = Object.fromEntries(
  Object.entries(OPTIONS).map(([name, spec]: [string, OptionSpec]) => [
    name,
    spec.short === undefined
      ? { type: spec.type, multiple: spec.multiple ?? false }
      : { type: spec.type, multiple: spec.multiple ?? false, short: spec.short },
  ]),
);

const LOG_OPTS = ["log-level", "log-format"] as const satisfies readonly OptionName[];
const META_OPTS = ["help", "version"] as const satisfies readonly OptionName[];

interface CommandSpec {
  readonly summary: string;
  readonly usage: readonly string[];
  readonly description: string;
  readonly options: readonly OptionName[];
  readonly examples: readonly string[];
}

const RUN_OPTS: readonly OptionName[] = [
  "iface",
  "cmode",
  "policy",
  "xdp-mode",
  "containerd-socket",
  "namespace",
  "metrics-addr",
  "pin-path",
  "keep-on-exit",
  "audit",
];

const COMMANDS: Record<Subcommand, CommandSpec> = {
  run: {
    summary: "run the agent on interfaces (--iface) and/or containers (--cmode)",
    usage: [
      "tinyfw [run] --iface NAME [--iface NAME ...] [options]",
      "tinyfw [run] --cmode [options]",
    ],
    description:
      "Attaches the XDP filter to every --iface interface and, with --cmode, to every\n" +
      "running and new container, and enforces the policy until SIGINT or SIGTERM.\n" +
      "'run' is implied when the first argument is an option. At least one of\n" +
      "--iface and --cmode is required; they combine. SIGHUP or a change of the\n" +
      "policy file reloads it.",
    options: RUN_OPTS,
    examples: [
      "tinyfw --iface eth0",
      "tinyfw --iface eth0 --iface eth1 --policy /etc/tinyfw/policy.yaml",
      "tinyfw --cmode --namespace k8s.io --metrics-addr 127.0.0.1:9476",
      "TINYFW_LOG=debug tinyfw run --cmode --audit --log-format json",
    ],
  },
  check: {
    summary: "validate a policy file and print what it compiles to",
    usage: ["tinyfw check [--policy FILE] [options]"],
    description: "Parses, validates and compiles FILE, then prints a summary: policies, rules\n" +
      "and compiled map entries. Every error names its policy, rule index, field and\n" +
      "YAML line. Without --policy, prints the built-in default policy.\n" +
      "Exit status: 0 when valid, 2 when not (with every error).",
    options: ["policy"],
    examples: ["tinyfw check --policy /etc/tinyfw/policy.yaml", "tinyfw check"],
  },
  explain: {
    summary: "decide one packet with the real XDP program and show the rule",
    usage: [
      "tinyfw explain [--policy FILE] [--name POLICY] --proto P [--src IP] [--dst IP]",
      "               [--sport N] [--dport N] [--direction ingress|egress]",
      "               [--icmp-type T] [--icmp-code C] [--json]",
    ],
    description: "Builds the packet, runs the XDP program on it in the kernel\n" +
      "(BPF_PROG_TEST_RUN) with the policy loaded, and prints the verdict and the\n" +
      "rule that decided it (none when the policy's default action did).\n" +
      "Needs root, like the agent.",
    options: [
      "policy",
      "name",
      "proto",
      "src",
      "dst",
      "sport",
      "dport",
      "direction",
      "icmp-type",
      "icmp-code",
      "json",
    ],
    examples: [
      "tinyfw explain --proto tcp --dport 80",
      "tinyfw explain --policy p.yaml --name web --proto tcp --dport 443",
      "tinyfw explain --policy policy.yaml --proto udp --dst fd00::a --dport 53 \\\n" +
      "    --direction egress --json",
      "tinyfw explain --proto icmpv6 --icmp-type echo-request",
    ],
  },
  status: {
    summary: "show what the running (or a crashed) agent has attached",
    usage: ["tinyfw status [--json] [--pin-path DIR] [options]"],
    description: "Reads what the agent recorded beside its pins (the interfaces and containers\n" +
      "filtered, their mode, program, policy and generation, the per-rule counters),\n" +
      "checks it against what the kernel has, and says where the two disagree.\n" +
      "Works while the agent runs and after it was killed.",
    options: ["json", "pin-path"],
    examples: ["tinyfw status", "tinyfw status --json"],
  },
  detach: {
    summary: "remove every filter and pin tinyfw left behind",
    usage: ["tinyfw detach [--pin-path DIR] [options]"],
    description: "Detaches every XDP program and tc learner tinyfw installed and removes its\n" +
      "pins and recorded state, e.g. after 'tinyfw run --keep-on-exit' or a crash.\n" +
      "Refused while an agent runs with the same pins. Programs tinyfw did not\n" +
      "install are left alone.",
    options: ["pin-path"],
    examples: ["tinyfw detach"],
  },
  help: {
    summary: "show help for a command",
    usage: ["tinyfw help [COMMAND]"],
    description: "Shows the help of COMMAND, or this overview without one.",
    options: [],
    examples: ["tinyfw help explain"],
  },
};

// ---------------------------------------------------------------------------
// Help text

function optionRows(names: readonly OptionName[]): [string, string][] {
  return names.map((name) => {
    const spec: OptionSpec = OPTIONS[name];
    const flag = (spec.short ? `-${spec.short}, ` : "") + `--${name}` +
      (spec.arg ? ` ${spec.arg}` : "");
    const help = spec.help + (spec.shown ? ` (default: ${spec.shown})` : "");
    return [flag, help];
  });
}

/** Help lines are wrapped to this many columns. */
const HELP_COLUMNS = 80;

function table(rows: [string, string][], width: number): string {
  const indent = " ".repeat(width + 4);
  return rows.map(([left, right]) =>
    wrap(right, HELP_COLUMNS - indent.length)
      .map((line, i) => (i === 0 ? `  ${left.padEnd(width)}  ${line}` : indent + line))
      .join("\n")
  ).join("\n");
}

function wrap(text: string, columns: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line !== "" && line.length + 1 + word.length > columns) {
      lines.push(line);
      line = word;
    } else {
      line = line === "" ? word : `${line} ${word}`;
    }
  }
  return [...lines, line];
}

function section(title: string, body: string): string {
  return `${title}:\n${body}`;
}

const TOP_NOTES =
  "Run 'tinyfw help COMMAND' or 'tinyfw COMMAND --help' for a command's options.\n" +
  "Exit status: 0 success, 1 runtime failure, 2 usage or configuration error.";

/**
 * The help text of a subcommand, or the overview (which also lists run's
 * options, since `run` is implied) without one.
 */
export function helpText(topic?: Subcommand): string {
  if (topic === undefined) {
    const runRows = optionRows(RUN_OPTS);
    const globalRows = optionRows([...LOG_OPTS, ...META_OPTS]);
    const cmdRows: [string, string][] = SUBCOMMANDS.map((c) => [c, COMMANDS[c].summary]);
    const width = Math.max(...[...runRows, ...globalRows].map(([l]) => l.length));
    return [
      `tinyfw ${VERSION} - container-aware host firewall (eBPF/XDP)`,
      section("Usage", "  tinyfw [run] [options]\n  tinyfw COMMAND [options]"),
      section("Commands", table(cmdRows, 8)),
      section("Run options", table(runRows, width)),
      section("Global options", table(globalRows, width)),
      section(
        "Examples",
        [...COMMANDS.run.examples.slice(0, 3), ...COMMANDS.check.examples.slice(0, 1)]
          .map((e) => `  ${e}`).join("\n"),
      ),
      TOP_NOTES,
    ].join("\n\n");
  }
  const spec = COMMANDS[topic];
  const names: OptionName[] = topic === "help"
    ? ["help"]
    : [...spec.options, ...LOG_OPTS, ...META_OPTS];
  const rows = optionRows(names);
  const width = Math.max(...rows.map(([l]) => l.length));
  return [
    `tinyfw ${topic} - ${spec.summary}`,
    section("Usage", spec.usage.map((u) => `  ${u}`).join("\n")),
    spec.description,
    section("Options", table(rows, width)),
    section("Examples", spec.examples.map((e) => `  ${e}`).join("\n")),
  ].join("\n\n");
}

// ---------------------------------------------------------------------------
// Parsing

/**
 * Parses the command line (without the program name) into a {@link Command}.
 *
 * @throws {UsageError} unknown command or option, missing or invalid value,
 *   missing required option, options that do not go together.
 */
export function parseCommandLine(args: readonly string[], options: ParseOptions = {}): Command {
  const env = options.env ?? readEnv;
  const rest = [...args];
  let cmd: Subcommand;
  let implied = false;
  if (rest.length === 0) {
    throw new UsageError(
      "nothing to do: give --iface NAME and/or --cmode to run the agent, or a command; see 'tinyfw --help'",
    );
  }
  const first = rest[0];
  if ((SUBCOMMANDS as readonly string[]).includes(first)) {
    cmd = rest.shift() as Subcommand;
  } else if (first.startsWith("-") && first !== "-") {
    cmd = "run";
    implied = true;
  } else {
    const hint = first === "version"
      ? " (did you mean --version?)"
      : didYouMean(first, SUBCOMMANDS, "");
    throw new UsageError(`unknown command '${first}'${hint}; see 'tinyfw --help'`);
  }

  const seeHelp = implied ? "see 'tinyfw --help'" : `see 'tinyfw ${cmd} --help'`;
  const usage = (msg: string) => new UsageError(`${msg}; ${seeHelp}`);
  const allowed = new Set<string>(
    cmd === "help" ? ["help"] : [...COMMANDS[cmd].options, ...LOG_OPTS, ...META_OPTS],
  );

  const { tokens } = parseArgs({
    args: rest,
    options: PARSE_ARGS_OPTIONS,
    strict: false,
    allowPositionals: true,
    tokens: true,
  });

  const values = new Map<OptionName, string[]>();
  const flags = new Set<OptionName>();
  const positionals: string[] = [];
  let firstError: UsageError | undefined;
  let wantHelp = false;
  let wantVersion = false;
  const fail = (msg: string) => {
    firstError ??= usage(msg);
  };

  for (const token of tokens) {
    if (token.kind === "positional") {
      positionals.push(token.value);
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
      else wantHelp = true;
      continue;
    }
    if (!allowed.has(name)) {
      fail(`${raw} is not an option of 'tinyfw ${cmd}'`);
      continue;
    }
    const spec: OptionSpec = OPTIONS[name];
    if (spec.type === "boolean") {
      if (token.value !== undefined) fail(`${raw} takes no value (got '${token.value}')`);
      else if (name === "version") wantVersion = true;
      else flags.add(name);
      continue;
    }
    const value = token.value;
    if (value === undefined || value === "" || (!token.inlineValue && looksLikeOption(value))) {
      if (value === "--help" || value === "-h") wantHelp = true;
      fail(`${raw} needs a value: ${raw} ${spec.arg}`);
      continue;
    }
    const list = values.get(name) ?? [];
    if (list.length > 0 && !spec.multiple) {
      fail(`${raw} was given more than once; give it once`);
      continue;
    }
    list.push(value);
    values.set(name, list);
  }

  if (cmd === "help") {
    if (wantHelp) return { cmd: "help", text: helpText() };
    if (firstError) throw firstError;
    if (positionals.length > 1) throw usage(`unexpected argument '${positionals[1]}'`);
    const topic = positionals[0];
    if (topic === undefined) return { cmd: "help", text: helpText() };
    if (!(SUBCOMMANDS as readonly string[]).includes(topic)) {
      throw usage(`unknown command '${topic}'${didYouMean(topic, SUBCOMMANDS, "")}`);
    }
    return { cmd: "help", text: helpText(topic as Subcommand) };
  }
  if (wantHelp) return { cmd: "help", text: helpText(implied ? undefined : cmd) };
  if (wantVersion) return { cmd: "version", text: versionText() };
  if (firstError) throw firstError;
  if (positionals.length > 0) {
    const p = positionals[0];
    const hint = cmd === "run" && !p.startsWith("-") && ifnameProblem(p) === undefined
      ? ` (to filter an interface, use --iface ${p})`
      : "";
    throw usage(`unexpected argument '${p}'${hint}`);
  }

  const one = (name: OptionName): string | undefined => values.get(name)?.[0];
  const many = (name: OptionName): string[] => [...new Set(values.get(name) ?? [])];
  const has = (name: OptionName): boolean => flags.has(name);
  const choice = <T extends string>(name: OptionName, choices: readonly T[], def: T): T => {
    const v = one(name);
    if (v === undefined) return def;
    if (!(choices as readonly string[]).includes(v)) {
      throw usage(`--${name} must be ${orList(choices)}, not '${v}'`);
    }
    return v as T;
  };

  const logLevel = resolveLogLevel(one("log-level"), env, usage);
  const logFormat = choice("log-format", LOG_FORMATS, "text");
  const log = { logLevel, logFormat };

  switch (cmd) {
    case "run": {
      // Every value is checked before what is missing, so a bad value is named
      // even when --iface and --cmode are absent too.
      const ifaces = many("iface");
      for (const iface of ifaces) {
        const problem = ifnameProblem(iface);
        if (problem) throw usage(`--iface '${iface}' is not an interface name: ${problem}`);
      }
      const namespaces = many("namespace");
      for (const ns of namespaces) {
        if (!isNamespaceName(ns)) {
          throw usage(
            `--namespace '${ns}' is not a containerd namespace name (letters and digits joined ` +
              "by '.', '_' or '-')",
          );
        }
      }
      const xdpMode = choice("xdp-mode", XDP_MODES, "auto");
      const metrics = one("metrics-addr");
      const metricsAddr = metrics === undefined ? undefined : parseHostPort(metrics, usage);
      const pin = pinPath(one("pin-path"), usage);
      let socket = one("containerd-socket");
      socket = socket?.replace(/^unix:\/\//, "");
      if (socket === "") throw usage("--containerd-socket needs a path");
      const cmode = has("cmode");
      if (!cmode && (socket !== undefined || namespaces.length > 0)) {
        const flag = socket !== undefined ? "--containerd-socket" : "--namespace";
        throw usage(`${flag} only applies with --cmode; add --cmode or drop ${flag}`);
      }
      if (ifaces.length === 0 && !cmode) {
        throw usage("tinyfw run needs --iface NAME or --cmode (or both)");
      }
      const command: RunCommand = {
        cmd: "run",
        ifaces,
        cmode,
        policy: one("policy"),
        xdpMode,
        containerdSocket: socket ?? DEFAULT_CONTAINERD_SOCKET,
        namespaces,
        metricsAddr,
        pinPath: pin,
        keepOnExit: has("keep-on-exit"),
        audit: has("audit"),
        ...log,
      };
      return dropUndefined(command);
    }
    case "check":
      return dropUndefined<CheckCommand>({ cmd: "check", policy: one("policy"), ...log });
    case "explain":
      return dropUndefined(parseExplain(one, has, choice, usage, log));
    case "status":
      return { cmd: "status", json: has("json"), pinPath: pinPath(one("pin-path"), usage), ...log };
    case "detach":
      return { cmd: "detach", pinPath: pinPath(one("pin-path"), usage), ...log };
  }
}

type Choice = <T extends string>(name: OptionName, choices: readonly T[], def: T) => T;
type Usage = (msg: string) => UsageError;

function parseExplain(
  one: (name: OptionName) => string | undefined,
  has: (name: OptionName) => boolean,
  choice: Choice,
  usage: Usage,
  log: LogOptions,
): ExplainCommand {
  const protoValue = one("proto");
  if (protoValue === undefined) {
    throw usage(`tinyfw explain needs --proto P (${orList(PACKET_PROTOS)})`);
  }
  const proto = choice("proto", PACKET_PROTOS, "tcp");
  const src = one("src");
  const dst = one("dst");
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
    const v = one(name);
    if (v === undefined) return undefined;
    if (!hasPorts) throw usage(`--${name} applies only to --proto tcp, udp or sctp`);
    const n = parseUint(v, 65535);
    if (n === undefined) throw usage(`--${name} must be a port number 0-65535, not '${v}'`);
    return n;
  };
  const icmp = (name: "icmp-type" | "icmp-code"): number | undefined => {
    const v = one(name);
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
  const name = one("name");
  return {
    cmd: "explain",
    policy: one("policy"),
    name,
    proto,
    family,
    src,
    dst,
    sport: port("sport"),
    dport: port("dport"),
    direction: choice("direction", PACKET_DIRECTIONS, "ingress"),
    icmpType: icmp("icmp-type"),
    icmpCode: icmp("icmp-code"),
    json: has("json"),
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

// ---------------------------------------------------------------------------
// Small syntax checks

/** Parses a decimal integer 0..max (no sign, no leading zeros beyond "0"); undefined otherwise. */
function parseUint(text: string, max: number): number | undefined {
  if (!/^(0|[1-9][0-9]{0,9})$/.test(text)) return undefined;
  const n = Number(text);
  return n <= max ? n : undefined;
}

/** 4 or 6 when `text` is an IPv4 (dotted quad) or IPv6 address, else undefined. */
export function ipFamily(text: string): 4 | 6 | undefined {
  if (isIPv4(text)) return 4;
  if (isIPv6(text)) return 6;
  return undefined;
}

function isIPv4(text: string): boolean {
  const parts = text.split(".");
  return parts.length === 4 && parts.every((p) => parseUint(p, 255) !== undefined && p.length <= 3);
}

function isIPv6(text: string): boolean {
  if (!/^[0-9A-Fa-f:.]+$/.test(text)) return false;
  const halves = text.split("::");
  if (halves.length > 2) return false;
  const groups = (s: string) => (s === "" ? [] : s.split(":"));
  const head = groups(halves[0]);
  const tail = halves.length === 2 ? groups(halves[1]) : [];
  const all = [...head, ...tail];
  let count = all.length;
  // An embedded IPv4 address may end the address and counts as two groups.
  const last = all[all.length - 1];
  if (last !== undefined && last.includes(".")) {
    if (!isIPv4(last) || !text.endsWith(last)) return false;
    all.pop();
    count += 1;
  }
  if (!all.every((g) => /^[0-9A-Fa-f]{1,4}$/.test(g))) return false;
  return halves.length === 2 ? count <= 7 : count === 8;
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

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
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
