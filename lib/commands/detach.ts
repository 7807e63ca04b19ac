/**
 * `tinyfw detach` (SPEC §2): removes every filter and pin tinyfw left under
 * a pin path — after `--keep-on-exit`, a crash or SIGKILL: the links pinned
 * there (their programs go with them), the recorded host interfaces' tc
 * learners and netlink attachments, and, on this namespace's interfaces,
 * tinyfw programs attached by netlink (by versions before links) and the
 * learners beside them; then the pins, the state and the lock files (the pin
 * path's, and this namespace's when no agent holds it). Refused,
 * in one sentence, while an agent holds the pin path.
 *
 * @module
 */

import { lockHolder, netnsLockPath, pinLockPath, removeLearner } from "../agent/mod.ts";
import { describeError, RuntimeError } from "../base/mod.ts";
import {
  linkOfProgram,
  openPinnedLink,
  tcEgressProgram,
  xdpDetach,
  xdpOccupant,
} from "../datapath/mod.ts";
import { RtnetlinkClient } from "../netlink/mod.ts";
import { type AgentState, PinSet, StateError, StateFiles, unpin } from "../persist/mod.ts";

/** What `detach` removed. */
export interface DetachReport {
  links: number;
  netlink: number;
  learners: number;
  pins: boolean;
  state: boolean;
  /** What could not be removed, one sentence each. */
  failures: string[];
}

/** Detaches everything tinyfw left under `pinPath`. */
export function detach(pinPath: string): DetachReport {
  const holder = lockHolder(pinLockPath(pinPath));
  if (holder !== null) {
    throw new RuntimeError(
      `A tinyfw agent (pid ${holder}) is running with the pins under ${pinPath}; stop it ` +
        `first (SIGINT or SIGTERM detaches everything it attached), then detach.`,
    );
  }
  const pins = new PinSet(pinPath);
  const files = new StateFiles(pinPath);
  const report: DetachReport = {
    links: 0,
    netlink: 0,
    learners: 0,
    pins: false,
    state: false,
    failures: [],
  };
  const attempt = (what: string, fn: () => void) => {
    try {
      fn();
    } catch (e) {
      report.failures.push(`${what}: ${describeError(e)}`);
    }
  };
  let state: AgentState | null = null;
  try {
    state = files.read();
  } catch (e) {
    if (!(e instanceof StateError)) throw e;
  }
  // The recorded host interfaces: learners, and attachments made by netlink.
  for (const r of state?.attachments ?? []) {
    if (r.kind !== "interface") continue;
    attempt(`the learner of ${r.iface}`, () => {
      if (tcEgressProgram(r.ifindex)?.tinyfw) {
        removeLearner(r.ifindex, r.learner);
        report.learners++;
      }
    });
    if (!r.link) {
      attempt(`the XDP program of ${r.iface}`, () => {
        if (xdpOccupant(r.ifindex).kind === "tinyfw") {
          xdpDetach(r.ifindex, r.mode);
          report.netlink++;
        }
      });
    }
  }
  // Every pinned link: unpinned, it is gone with its program (unless held elsewhere). Held
  // open across the unpin so that closing it releases the link now: the kernel releases a
  // link whose last pin goes away later, from a work queue, and the scan below would find
  // its program still attached.
  for (const p of pins.links()) {
    attempt(p.path, () => {
      const link = openPinnedLink(p.path);
      try {
        if (unpin(p.path)) report.links++;
      } finally {
        link?.close();
      }
    });
  }
  // This namespace's interfaces: what a tinyfw without links left (netlink), and learners
  // whose XDP program is gone.
  const rtnl = RtnetlinkClient.open();
  try {
    for (const l of rtnl.listLinks()) {
      attempt(`interface ${l.name}`, () => {
        const there = xdpOccupant(l.index);
        if (there.kind === "tinyfw" && !linkOfProgram(there.id)) {
          xdpDetach(l.index, there.mode);
          report.netlink++;
        }
        const stillFiltered = xdpOccupant(l.index).kind === "tinyfw";
        if (!stillFiltered && tcEgressProgram(l.index)?.tinyfw) {
          removeLearner(l.index, null);
          report.learners++;
        }
      });
    }
  } finally {
    rtnl.close();
  }
  attempt(`the pins under ${pinPath}`, () => {
    report.pins = pins.remove();
  });
  attempt(`the state in ${files.dir}`, () => {
    report.state = files.remove();
  });
  attempt("the lock files", () => {
    unpin(pinLockPath(pinPath)); // a plain file; no process holds it
    // A killed agent leaves its namespace's lock file too; only an unheld one goes.
    const netns = netnsLockPath();
    if (lockHolder(netns) === null) unpin(netns);
  });
  return report;
}

/** What `detach` prints on stdout (its failures, one sentence each, go to stderr). */
export function formatDetach(pinPath: string, r: DetachReport): string {
  const total = r.links + r.netlink;
  return (
    total || r.learners || r.pins || r.state
      ? `detached ${total} XDP filter${total === 1 ? "" : "s"} (${r.links} held by a pinned ` +
        `link, ${r.netlink} attached by netlink) and ${r.learners} flow learner${
          r.learners === 1 ? "" : "s"
        }; ` +
        `removed ${r.pins ? `the pins under ${pinPath}` : "no pins"} and ` +
        `${r.state ? "the recorded state" : "no state"}`
      : `nothing of tinyfw's was left under ${pinPath}`
  );
}
