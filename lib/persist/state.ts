/**
 * What a running agent records beside its pins so that a later agent (after
 * a crash, SIGKILL, an upgrade, `--keep-on-exit`) and `tinyfw status` can
 * make sense of them: which attach id filters which interface or container
 * side in which mode, which policy each slot holds and which counters its
 * rules use, and the map layout they were written with. bpffs holds only BPF
 * objects, so these are JSON files in `/run/tinyfw/state/PIN-PATH/`:
 *
 * - `policies.json`: the slots and their policies, and the counts carried
 *   over slots that are gone (written at start and at each reload; a
 *   100,000-rule policy makes it a few MB);
 * - `attachments.json`: every attachment (written at each change, small).
 *
 * Each is written atomically (a new file renamed over the old), so a reader
 * never sees half of one. The kernel stays the truth: status compares these
 * records with what it finds there and says where they disagree.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { CONSTANTS, LAYOUTS } from "../abi/mod.ts";
import type { XdpMode } from "../datapath/mod.ts";
import type { Side } from "./pinset.ts";

/** Where the state of every pin path lives (tmpfs: gone at reboot, with the programs). */
export const STATE_ROOT = "/run/tinyfw/state";
/** The version of these files' format. */
export const STATE_FORMAT = 1;

let layout: string | undefined;

/**
 * The identity of the data path's map layout: a hash of every key and value
 * layout and every constant (map sizes included). Pins written with another
 * layout cannot be reused.
 */
export function layoutId(): string {
  layout ??= createHash("sha256")
    .update(JSON.stringify({ LAYOUTS, CONSTANTS }))
    .digest("hex")
    .slice(0, 16);
  return layout;
}

/** The carried part of a counter, as the state records it (numbers as decimal strings). */
export interface CarriedRecord {
  readonly policy: string;
  readonly rule: string | null;
  readonly action: "allow" | "deny";
  readonly direction: "ingress" | "egress";
  readonly packets: string;
  readonly bytes: string;
}

/** A policy installed in a slot, and its counters. */
export interface PolicyRecord {
  readonly slot: number;
  readonly policy: string;
  readonly defaultAction: "allow" | "deny";
  /** First counter; rule i in direction d is `counterBase + 2i + d`, the default `+ 2n + d`. */
  readonly counterBase: number;
  readonly counterCount: number;
  /** Rule names and actions, in order. */
  readonly rules: readonly { readonly name: string; readonly action: "allow" | "deny" }[];
  /** The `fast_l4` tables the slot uses. */
  readonly fastTables: readonly number[];
}

/** The flow learner on a host interface's tc egress hook. */
export interface LearnerRecord {
  readonly handle: number;
  readonly priority: number;
  readonly progId: number;
  readonly createdQdisc: boolean;
}

/** A host interface filtered with `--iface`. */
export interface InterfaceRecord {
  readonly kind: "interface";
  readonly attachId: number;
  readonly iface: string;
  readonly ifindex: number;
  readonly mode: XdpMode;
  /** Held by the link pinned at `PinSet.hostLink(iface)`; false: a netlink attachment. */
  readonly link: boolean;
  readonly policy: string;
  readonly learner: LearnerRecord | null;
}

/** One end of a container's veth pair. */
export interface SideRecord {
  readonly kind: "container";
  readonly attachId: number;
  /** The container's network namespace (`dev:ino`). */
  readonly netns: string;
  readonly side: Side;
  /** The interface the program is on: the host end (egress) or, in the container's namespace, its end. */
  readonly ifindex: number;
  /** The host end's name. */
  readonly hostIface: string;
  readonly mode: XdpMode;
  readonly policy: string;
  readonly container: { readonly id: string; readonly name: string; readonly namespace: string };
  /** A process of the container when it was recorded (its namespace is `/proc/PID/ns/net`). */
  readonly pid: number;
}

/** A veth's host end filtered before a container claims it. */
export interface VethRecord {
  readonly kind: "veth";
  readonly attachId: number;
  readonly ifindex: number;
  readonly iface: string;
  readonly mode: XdpMode;
  readonly policy: string;
}

export type AttachmentRecord = InterfaceRecord | SideRecord | VethRecord;

/** What one file says about the agent that wrote it. */
export interface StateHeader {
  readonly format: number;
  readonly layout: string;
  readonly version: string;
  readonly pid: number;
  /** The agent lock it held (`lib/agent/lock.ts`). */
  readonly lock: string;
  readonly pinPath: string;
  readonly keepOnExit: boolean;
  readonly written: string;
}

/** The whole state of a pin path. */
export interface AgentState {
  readonly header: StateHeader;
  readonly policies: readonly PolicyRecord[];
  /** Counts of slots that are gone, per rule (they continue in the next slots). */
  readonly carried: readonly CarriedRecord[];
  readonly attachments: readonly AttachmentRecord[];
}

/** The files of one pin path's state. */
export class StateFiles {
  readonly dir: string;

  constructor(readonly pinPath: string, readonly root = STATE_ROOT) {
    this.dir = `${root}${pinPath}`;
  }

  get policiesPath(): string {
    return `${this.dir}/policies.json`;
  }

  get attachmentsPath(): string {
    return `${this.dir}/attachments.json`;
  }

  /** The recorded state, or null when there is none. Throws StateError when unreadable. */
  read(): AgentState | null {
    const p = readJson(this.policiesPath);
    const a = readJson(this.attachmentsPath);
    if (!p && !a) return null;
    const header = (a?.header ?? p?.header) as StateHeader;
    if (typeof header?.format !== "number" || typeof header?.layout !== "string") {
      throw new StateError(`${this.dir} holds no tinyfw state header`);
    }
    return {
      header,
      policies: (p?.policies ?? []) as PolicyRecord[],
      carried: (p?.carried ?? []) as CarriedRecord[],
      attachments: (a?.attachments ?? []) as AttachmentRecord[],
    };
  }

  writePolicies(
    header: StateHeader,
    policies: readonly PolicyRecord[],
    carried: readonly CarriedRecord[],
  ): void {
    writeJsonAtomic(this.policiesPath, { header, policies, carried });
  }

  writeAttachments(header: StateHeader, attachments: readonly AttachmentRecord[]): void {
    writeJsonAtomic(this.attachmentsPath, { header, attachments });
  }

  /** Removes the state (and the directories above it that it leaves empty); false if there was none. */
  remove(): boolean {
    try {
      Deno.removeSync(this.dir, { recursive: true });
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return false;
      throw e;
    }
    for (let d = this.dir.slice(0, this.dir.lastIndexOf("/")); d.length > this.root.length;) {
      try {
        Deno.removeSync(d); // only when empty
      } catch {
        break;
      }
      d = d.slice(0, d.lastIndexOf("/"));
    }
    return true;
  }
}

/** A state file that cannot be read. */
export class StateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StateError";
  }
}

function readJson(path: string): Record<string, unknown> | null {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new StateError(`${path} is not valid JSON`);
  }
}

function writeJsonAtomic(path: string, value: unknown): void {
  const dir = path.slice(0, path.lastIndexOf("/"));
  Deno.mkdirSync(dir, { recursive: true, mode: 0o755 });
  const tmp = `${path}.${Deno.pid}.tmp`;
  Deno.writeTextFileSync(tmp, JSON.stringify(value) + "\n", { mode: 0o644 });
  Deno.renameSync(tmp, path);
}
