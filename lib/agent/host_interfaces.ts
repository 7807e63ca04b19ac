/**
 * The host interfaces given with `--iface`: each filtered by a program
 * instance of its own at XDP (held by a pinned BPF link), and a flow learner
 * on its tc egress hook (DATAPATH.md §7). An interface an earlier agent left
 * filtered is adopted: its link switched to the new instance atomically, with
 * the same attach id, so no packet passes unfiltered and nothing is attached
 * twice.
 *
 * Everything here runs in the agent's own network namespace.
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import { describeError, RuntimeError } from "../base/mod.ts";
import { BpfError } from "../ffi/mod.ts";
import {
  type InterfaceRecord,
  type LearnerRecord,
  type LeftLink,
  type Leftovers,
  type PinSet,
  unpin,
} from "../persist/mod.ts";
import {
  type AttachIds,
  attachProgram,
  type AttachProgramOptions,
  attachTcEgress,
  attemptedMode,
  type Datapath,
  detachTcEgress,
  type LoadedProgram,
  pinLink,
  TC_HANDLE,
  TC_PRIORITY,
  type TcEgressAttachment,
  updateLink,
  xdpDetach,
  type XdpLink,
  type XdpMode,
  type XdpProgram,
} from "../datapath/mod.ts";
import type { Link } from "../netlink/mod.ts";

/** One interface the agent filters. */
export interface HostAttachment {
  readonly iface: string;
  readonly ifindex: number;
  readonly attachId: number;
  readonly mode: XdpMode;
  prog: XdpProgram;
  /** The link holding the program (pinned); null: a netlink attachment an older tinyfw made. */
  readonly link: XdpLink | null;
  /** The flow learner on the interface's egress (replies to the host's own traffic). */
  learner?: TcEgressAttachment;
  policy: string;
}

/** An interface checked and ready to attach. */
export interface Target {
  readonly link: Link;
  /** A tinyfw program on it (left by an earlier run): replaced atomically. */
  readonly stale?: { id: number; mode: XdpMode };
}

/** The agent's host interfaces. */
export class HostInterfaces {
  readonly #dp: Datapath;
  readonly #pins: PinSet;
  readonly #ids: AttachIds;
  readonly #log: Logger;
  readonly #learner: LoadedProgram;
  readonly all: HostAttachment[] = [];

  constructor(opts: {
    dp: Datapath;
    pins: PinSet;
    ids: AttachIds;
    log: Logger;
    learner: LoadedProgram;
  }) {
    this.#dp = opts.dp;
    this.#pins = opts.pins;
    this.#ids = opts.ids;
    this.#log = opts.log;
    this.#learner = opts.learner;
  }

  /**
   * The attach ids the targets will use: an adopted link's own (its program
   * reads it), else a new one. Call before configuring the attach entries.
   */
  plan(targets: readonly Target[], left: Leftovers): Planned[] {
    return targets.map((t) => {
      const adopted = left.takeHost(t.link.name, t.link.index);
      return { target: t, adopted, attachId: adopted?.attachId ?? this.#ids.take() };
    });
  }

  /**
   * Attaches (or adopts) one planned interface whose attach entry points at
   * its policy already. From here on, {@link stop} detaches it.
   */
  attach(p: Planned, want: "auto" | XdpMode, policy: string): HostAttachment {
    const { target, adopted, attachId } = p;
    const name = target.link.name;
    const prog = this.#dp.instance(attachId);
    let a: HostAttachment;
    try {
      a = adopted
        ? this.#adopt(target, adopted, prog, policy)
        : this.#attachNew(target, prog, want, policy);
    } catch (e) {
      prog.close();
      throw e;
    }
    this.all.push(a);
    // Replies to what the host itself sends must pass a default-deny policy. Replacing
    // keeps it single: a learner an earlier run left at the same handle is taken over.
    a.learner = attachTcEgress(a.ifindex, this.#learner.fd, { replace: true });
    this.#log.info(`${adopted ? "adopted" : "attached to"} {iface} in {mode} mode`, {
      iface: name,
      ifindex: a.ifindex,
      mode: a.mode,
      program_id: prog.id,
      policy,
    });
    return a;
  }

  #adopt(t: Target, left: LeftLink, prog: XdpProgram, policy: string): HostAttachment {
    updateLink(left.link, prog.fd, left.progId);
    this.#log.debug("{iface}: link {link} switched from program {old} to {new}", {
      iface: t.link.name,
      link: left.link.id,
      old: left.progId,
      new: prog.id,
    });
    const mode = left.mode ?? t.stale?.mode ?? "generic";
    return {
      iface: t.link.name,
      ifindex: t.link.index,
      attachId: left.attachId,
      mode,
      prog,
      link: left.link,
      policy,
    };
  }

  #attachNew(
    t: Target,
    prog: XdpProgram,
    want: "auto" | XdpMode,
    policy: string,
  ): HostAttachment {
    const { link: l, stale } = t;
    if (stale) {
      this.#log.warn("replacing the tinyfw program (id {old}) an earlier run left on {iface}", {
        iface: l.name,
        old: stale.id,
      });
    }
    const opts: AttachProgramOptions = {
      want,
      stale,
      onNativeRefused: (e) =>
        this.#log.info("native XDP is not available on {iface} ({reason}); using generic mode", {
          iface: l.name,
          reason: e.message,
        }),
      onModeKept: (mode) =>
        this.#log.warn(
          "{iface} keeps the {mode} mode of the program it replaces; 'tinyfw detach' first to change it",
          { iface: l.name, mode },
        ),
    };
    let attached;
    try {
      attached = attachProgram(l.index, prog.fd, opts);
    } catch (e) {
      if (!(e instanceof BpfError)) throw e;
      const tried = attemptedMode(opts);
      throw new RuntimeError(
        `Could not attach to ${l.name} in ${tried} mode: ${e.message}` +
          (tried === "native" ? "; try --xdp-mode generic." : "."),
        { cause: e },
      );
    }
    if (attached.link) {
      const path = this.#pins.hostLink(l.name);
      unpin(path); // a pin of a link that is gone, left by a crash before its interface went
      pinLink(attached.link, path);
    }
    return {
      iface: l.name,
      ifindex: l.index,
      attachId: prog.attachId,
      mode: attached.mode,
      prog,
      link: attached.link,
      policy,
    };
  }

  /** What the state records of each interface. */
  records(): InterfaceRecord[] {
    return this.all.map((a) => ({
      kind: "interface",
      attachId: a.attachId,
      iface: a.iface,
      ifindex: a.ifindex,
      mode: a.mode,
      link: a.link !== null,
      policy: a.policy,
      learner: a.learner ? learnerRecord(a.learner) : null,
    }));
  }

  /**
   * Leaves every interface filtered (`--keep-on-exit`): the pinned links and
   * the learners stay; only this process's descriptors are closed.
   */
  keep(): void {
    for (const a of this.all.splice(0)) {
      a.link?.close();
      a.prog.close();
    }
  }

  /** Detaches every interface: unpins and closes its link (or detaches it), removes its learner. */
  stop(): void {
    for (const a of this.all.splice(0).reverse()) {
      try {
        if (a.learner) {
          detachTcEgress(a.ifindex, {
            progId: a.learner.progId,
            createdQdisc: a.learner.createdQdisc,
          });
        }
        if (a.link) {
          unpin(this.#pins.hostLink(a.iface));
          a.link.close(); // the last reference: the program is detached
        } else {
          xdpDetach(a.ifindex, a.mode, { expectFd: a.prog.fd });
        }
        this.#log.info("detached from {iface}", { iface: a.iface, ifindex: a.ifindex });
      } catch (e) {
        this.#log.warn("could not detach from {iface}: {reason}", {
          iface: a.iface,
          reason: describeError(e),
        });
      } finally {
        a.prog.close();
        this.#ids.free(a.attachId);
      }
    }
  }
}

/** A target with the attach id it will use, and the link it adopts if any. */
export interface Planned {
  readonly target: Target;
  readonly adopted?: LeftLink;
  readonly attachId: number;
}

/** What the state records of a tc learner. */
export function learnerRecord(l: TcEgressAttachment): LearnerRecord {
  return { handle: l.handle, priority: l.priority, progId: l.progId, createdQdisc: l.createdQdisc };
}

/** Removes the learner a record describes (an interface no longer filtered). */
export function removeLearner(ifindex: number, r: LearnerRecord | null): void {
  detachTcEgress(ifindex, {
    handle: r?.handle ?? TC_HANDLE,
    priority: r?.priority ?? TC_PRIORITY,
    progId: r?.progId,
    createdQdisc: r?.createdQdisc ?? false,
  });
}
