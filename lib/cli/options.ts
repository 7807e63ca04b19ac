/**
 * The option table: every flag of every subcommand, with its type, value
 * name, help line and default, in one place that parsing and help both read.
 *
 * @module
 */

import { DEFAULT_CONTAINERD_SOCKET, DEFAULT_PIN_PATH, type Subcommand } from "./types.ts";

export interface OptionSpec {
  readonly type: "string" | "boolean";
  readonly multiple?: boolean;
  readonly short?: string;
  /** Placeholder for the value in help, e.g. NAME. */
  readonly arg?: string;
  readonly help: string;
  /** Shown in help as "(default: ...)". */
  readonly shown?: string;
}

export const OPTIONS = {
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

export type OptionName = keyof typeof OPTIONS;

/** The option table in the form node:util parseArgs takes. */
export const PARSE_ARGS_OPTIONS = Object.fromEntries(
  Object.entries(OPTIONS).map(([name, spec]: [string, OptionSpec]) => [
    name,
    spec.short === undefined
      ? { type: spec.type, multiple: spec.multiple ?? false }
      : { type: spec.type, multiple: spec.multiple ?? false, short: spec.short },
  ]),
);

export const LOG_OPTS = ["log-level", "log-format"] as const satisfies readonly OptionName[];
export const META_OPTS = ["help", "version"] as const satisfies readonly OptionName[];

export interface CommandSpec {
  readonly summary: string;
  readonly usage: readonly string[];
  readonly description: string;
  readonly options: readonly OptionName[];
  readonly examples: readonly string[];
}

export const RUN_OPTS: readonly OptionName[] = [
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

export const COMMANDS: Record<Subcommand, CommandSpec> = {
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
