/**
 * The agent: owns the loaded data path, the installed policy and the XDP
 * attachments on host interfaces, from start to a clean detach.
 *
 * Start-up checks everything before it attaches anything (interfaces exist, no
 * foreign XDP program is in the way), then attaches interface by interface and
 * rolls back what it attached if one fails: the host is never left half
 * configured by a failed start.
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import { ConfigError, RuntimeError } from "./errors.ts";
import { RtnetlinkClient } from "./netlink/rtnetlink.ts";
import type { Link } from "./netlink/link.ts";
import { BpfError } from "./ffi/errors.ts";
import {
  Datapath,
  openProgram,
  progInfo,
  PROGRAM_NAME,
  xdpAttach,
  xdpDetach,
  type XdpMode,
  type XdpProgram,
} from "./datapath/object.ts";
import { type InstalledPolicy, PolicySlots } from "./datapath/policy_slots.ts";
import { DIR_INGRESS } from "./datapath/layout.ts";
import { compilePolicy } from "./policy/compile.ts";
import type { Policy } from "./policy/types.ts";

/** What the agent is asked to do. */
export interface AgentOptions {
  /** Host interfaces to filter (ingress). */
  readonly ifaces: readonly string[];
  /** `auto` tries native, then generic. */
  readonly xdpMode: "auto" | XdpMode;
  /** The policy every interface gets. */
  readonly policy: Policy;
  readonly log: Logger;
}

/** One interface the agent filters. */
interface Attachment {
  readonly iface: string;
  readonly ifindex: number;
  readonly mode: XdpMode;
  readonly prog: XdpProgram;
}

/** An interface checked and ready to attach. */
interface Target {
  readonly link: Link;
  /** A tinyfw program left by an earlier run, replaced atomically. */
  readonly stale?: { id: number; mode: XdpMode };
}

/** The running agent. */
export class Agent {
  readonly #log: Logger;
  readonly #dp: Datapath;
  readonly #slots: PolicySlots;
  readonly #installed: InstalledPolicy;
  readonly #attachments: Attachment[] = [];

  private constructor(log: Logger, dp: Datapath, slots: PolicySlots, installed: InstalledPolicy) {
    this.#log = log;
    this.#dp = dp;
    this.#slots = slots;
    this.#installed = installed;
  }

  /** Checks, loads, installs the policy and attaches to every interface, or changes nothing. */
  static start(opts: AgentOptions): Agent {
    const targets = checkInterfaces(opts.ifaces);
    const dp = loadDatapath();
    const slots = new PolicySlots(dp);
    const started = performance.now();
    const installed = slots.install(compilePolicy(opts.policy));
    opts.log.info("policy {policy} installed: {rules} rules in {ms} ms", {
      policy: opts.policy.name,
      rules: opts.policy.rules.length,
      ms: Math.round(performance.now() - started),
    });
    const agent = new Agent(opts.log, dp, slots, installed);
    try {
      targets.forEach((t, i) => agent.#attach(t, i + 1, opts.xdpMode));
    } catch (e) {
      agent.stop();
      throw e;
    }
    return agent;
  }

  /** The interfaces filtered now, with their XDP mode. */
  attachments(): { iface: string; ifindex: number; mode: XdpMode; programId: number }[] {
    return this.#attachments.map((a) => ({
      iface: a.iface,
      ifindex: a.ifindex,
      mode: a.mode,
      programId: a.prog.id,
    }));
  }

  #attach(target: Target, attachId: number, want: "auto" | XdpMode): void {
    const { link, stale } = target;
    this.#slots.configureAttachment(attachId, this.#installed.slot, DIR_INGRESS);
    const prog = this.#dp.instance(attachId);
    try {
      const mode = stale
        ? this.#replace(link, prog, stale, want)
        : this.#attachNew(link, prog, want);
      this.#attachments.push({ iface: link.name, ifindex: link.index, mode, prog });
      this.#log.info("attached to {iface} in {mode} mode", {
        iface: link.name,
        ifindex: link.index,
        mode,
        program_id: prog.id,
        policy: this.#installed.compiled.policy.name,
      });
    } catch (e) {
      prog.close();
      throw e;
    }
  }

  #attachNew(link: Link, prog: XdpProgram, want: "auto" | XdpMode): XdpMode {
    if (want !== "auto") {
      attachOrExplain(link, prog, want);
      return want;
    }
    try {
      xdpAttach(link.index, prog.fd, { mode: "native" });
      return "native";
    } catch (e) {
      if (!(e instanceof BpfError)) throw e;
      this.#log.info("native XDP is not available on {iface} ({reason}); using generic mode", {
        iface: link.name,
        reason: e.message,
      });
    }
    attachOrExplain(link, prog, "generic");
    return "generic";
  }

  /** Replaces a tinyfw program left by an earlier run, without a moment unfiltered where possible. */
  #replace(
    link: Link,
    prog: XdpProgram,
    stale: { id: number; mode: XdpMode },
    want: "auto" | XdpMode,
  ): XdpMode {
    const mode = want === "auto" ? stale.mode : want;
    this.#log.warn("replacing the tinyfw program (id {old}) an earlier run left on {iface}", {
      iface: link.name,
      old: stale.id,
    });
    if (mode === stale.mode) {
      const { fd: oldFd, close } = openProgram(stale.id);
      try {
        xdpAttach(link.index, prog.fd, { mode, replaceFd: oldFd });
      } finally {
        close();
      }
      return mode;
    }
    // A mode change cannot be one atomic replace: detach the old, attach the new.
    xdpDetach(link.index, stale.mode);
    attachOrExplain(link, prog, mode);
    return mode;
  }

  /** Detaches every program this agent attached (only if it is still the one attached). */
  stop(): void {
    for (const a of this.#attachments.splice(0).reverse()) {
      try {
        xdpDetach(a.ifindex, a.mode, { expectFd: a.prog.fd });
        this.#log.info("detached from {iface}", { iface: a.iface, ifindex: a.ifindex });
      } catch (e) {
        this.#log.warn("could not detach from {iface}: {reason}", {
          iface: a.iface,
          reason: e instanceof Error ? e.message : String(e),
        });
      } finally {
        a.prog.close();
      }
    }
    this.#dp.close();
  }
}

/** Resolves every interface and refuses foreign XDP programs, before anything is attached. */
function checkInterfaces(names: readonly string[]): Target[] {
  const rtnl = RtnetlinkClient.open();
  try {
    return names.map((name) => {
      const link = rtnl.getLink(name);
      if (!link) {
        throw new ConfigError(
          `There is no network interface named "${name}" here; \`ip link\` lists the interfaces.`,
        );
      }
      const id = link.xdp.progId || link.xdp.drvProgId || link.xdp.skbProgId ||
        link.xdp.hwProgId;
      if (!id) return { link };
      const info = progInfo({ id });
      const mode: XdpMode | null = link.xdp.mode === "native"
        ? "native"
        : link.xdp.mode === "generic"
        ? "generic"
        : null;
      if (info.name === PROGRAM_NAME && mode) return { link, stale: { id, mode } };
      throw new RuntimeError(
        `Interface ${name} already has an XDP program that tinyfw did not install ` +
          `(id ${id}, name "${info.name}", ${link.xdp.mode} mode); tinyfw does not replace it: ` +
          `remove it first (ip link set dev ${name} xdp off) or leave ${name} out.`,
      );
    });
  } finally {
    rtnl.close();
  }
}

function loadDatapath(): Datapath {
  try {
    return Datapath.load();
  } catch (e) {
    if (e instanceof BpfError && (e.errno === 1 || e.errno === 13)) {
      throw new RuntimeError(
        `The kernel refused to load tinyfw's XDP program (${e.message}): run as root with BPF enabled.`,
        { cause: e },
      );
    }
    throw e;
  }
}

function attachOrExplain(link: Link, prog: XdpProgram, mode: XdpMode): void {
  try {
    xdpAttach(link.index, prog.fd, { mode });
  } catch (e) {
    if (!(e instanceof BpfError)) throw e;
    throw new RuntimeError(
      `Could not attach to ${link.name} in ${mode} mode: ${e.message}` +
        (mode === "native" ? "; try --xdp-mode generic." : "."),
      { cause: e },
    );
  }
}
