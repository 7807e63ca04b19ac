/**
 * The parsed command line (SPEC §2): one typed {@link Command} per
 * subcommand, every default filled in, and the defaults themselves.
 *
 * @module
 */

import type { HostPort } from "../net/mod.ts";
export type { HostPort } from "../net/mod.ts";
import type { LogFormat, LogLevel } from "../base/mod.ts";

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
