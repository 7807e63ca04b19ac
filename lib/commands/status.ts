/**
 * `tinyfw status [--json]` (SPEC §2): what the running agent, or one that
 * was killed, has attached under a pin path — interfaces, containers' veth
 * ends, their mode, program, link and policy, the policies in force and
 * their per-rule counters. It reads the state the agent recorded and checks
 * it against the kernel (the pinned links, the programs they run, what the
 * interfaces carry), saying where the two disagree. Read-only: it works
 * while an agent runs.
 *
 * @module
 */

import {
  CarriedCounters,
  lockHolder,
  pinLockPath,
  recordedCounts,
  type RuleCounter,
} from "../agent/mod.ts";
import {
  BpfMap,
  linkState,
  openPinnedLink,
  progInfo,
  PROGRAM_NAME,
  readCounterRange,
  tcEgressProgram,
  u32Key,
  xdpOccupant,
  xdpQuery,
} from "../datapath/mod.ts";
import { AttachValue, decode, StateValue } from "../abi/mod.ts";
import { objGet } from "../ffi/mod.ts";
import { RtnetlinkClient } from "../netlink/mod.ts";
import {
  type AgentState,
  type AttachmentRecord,
  layoutId,
  PinSet,
  StateError,
  StateFiles,
} from "../persist/mod.ts";

/** What the kernel has for one recorded attachment. */
export interface KernelView {
  /** The pinned link's id, program and interface, when a link is pinned for it. */
  link?: { id: number; progId: number; ifindex: number; defunct: boolean };
  /** The program the interface carries at XDP (host interfaces: this namespace only). */
  attachedProgId?: number;
  /** The program on tinyfw's tc egress filter of the interface (host interfaces). */
  learnerProgId?: number | null;
  /** What the pinned maps say the attachment enforces: generation, slot, and its policy. */
  inForce?: { generation: number; slot: number; policy: string | null };
}

/** One attachment as recorded, with what the kernel says of it. */
export interface AttachmentStatus {
  readonly record: AttachmentRecord;
  readonly kernel: KernelView;
  /** Where the record and the kernel disagree. */
  readonly problems: string[];
}

/** The whole report. */
export interface Status {
  readonly pinPath: string;
  readonly agent: { running: boolean; pid: number | null };
  readonly state: {
    readonly written: string;
    readonly version: string;
    readonly layout: string;
    readonly layoutMatches: boolean;
    readonly keepOnExit: boolean;
  } | null;
  readonly attachments: AttachmentStatus[];
  readonly policies: { policy: string; slot: number; rules: number; defaultAction: string }[];
  readonly counters: RuleCounter[];
  /** Disagreements not tied to one record (pins or programs no record describes). */
  readonly problems: string[];
}

/** The status of pin path `pinPath`. */
export function status(pinPath: string): Status {
  const pins = new PinSet(pinPath);
  const files = new StateFiles(pinPath);
  const holder = lockHolder(pinLockPath(pinPath));
  const problems: string[] = [];
  let state: AgentState | null = null;
  try {
    state = files.read();
  } catch (e) {
    if (!(e instanceof StateError)) throw e;
    problems.push(`the recorded state is damaged: ${e.message}`);
  }
  const slots = SlotReader.open(pins, state);
  let attachments: AttachmentStatus[];
  try {
    attachments = (state?.attachments ?? []).map((r) => attachmentStatus(r, pins, slots));
  } finally {
    slots?.close();
  }
  const recordedPins = new Set(attachments.map((a) => pinOf(a.record, pins)));
  for (const p of pins.links()) {
    if (!recordedPins.has(p.path)) problems.push(`${p.path}: a pinned link no record describes`);
  }
  // Host interfaces that run a tinyfw program no record describes.
  const recordedIfaces = new Set(
    (state?.attachments ?? []).filter((r) => r.kind === "interface").map((r) => r.ifindex),
  );
  const rtnl = RtnetlinkClient.open();
  try {
    for (const l of rtnl.listLinks()) {
      if (recordedIfaces.has(l.index)) continue;
      let there;
      try {
        there = xdpOccupant(l.index);
      } catch {
        continue;
      }
      if (there.kind === "tinyfw" && !attachments.some((a) => a.kernel.link?.progId === there.id)) {
        problems.push(`${l.name} runs a tinyfw program (id ${there.id}) that no record describes`);
      }
    }
  } finally {
    rtnl.close();
  }
  const counters = state ? readCounters(pins, state, problems) : [];
  if (!state && !pins.exists()) problems.push(`nothing is pinned under ${pinPath}`);
  return {
    pinPath,
    agent: { running: holder !== null, pid: holder !== null ? Number(holder) || null : null },
    state: state && {
      written: state.header.written,
      version: state.header.version,
      layout: state.header.layout,
      layoutMatches: state.header.layout === layoutId(),
      keepOnExit: state.header.keepOnExit,
    },
    attachments,
    policies: (state?.policies ?? []).map((p) => ({
      policy: p.policy,
      slot: p.slot,
      rules: p.rules.length,
      defaultAction: p.defaultAction,
    })),
    counters,
    problems,
  };
}

function pinOf(r: AttachmentRecord, pins: PinSet): string {
  if (r.kind === "interface") return pins.hostLink(r.iface);
  if (r.kind === "veth") return pins.vethLink(r.ifindex);
  return pins.sideLink(r.netns, r.side, r.ifindex);
}

/** Reads, from the pinned `state` and `attach` maps, which slot an attach id enforces. */
class SlotReader {
  private constructor(
    readonly state: BpfMap,
    readonly attach: BpfMap,
    readonly policyOf: ReadonlyMap<number, string>,
  ) {}

  static open(pins: PinSet, state: AgentState | null): SlotReader | null {
    let stateMap: BpfMap | undefined;
    try {
      stateMap = new BpfMap(objGet(`${pins.mapsDir}/state`), true);
      const attach = new BpfMap(objGet(`${pins.mapsDir}/attach`), true);
      return new SlotReader(
        stateMap,
        attach,
        new Map((state?.policies ?? []).map((p) => [p.slot, p.policy])),
      );
    } catch {
      stateMap?.close();
      return null;
    }
  }

  inForce(attachId: number): KernelView["inForce"] {
    const gen = this.state.lookup(u32Key(0));
    const entry = this.attach.lookup(u32Key(attachId));
    if (!gen || !entry) return undefined;
    const generation = Number(decode(StateValue, gen).gen);
    const slot = (decode(AttachValue, entry).slot as number[])[generation];
    return { generation, slot, policy: this.policyOf.get(slot) ?? null };
  }

  close(): void {
    this.state.close();
    this.attach.close();
  }
}

function attachmentStatus(
  r: AttachmentRecord,
  pins: PinSet,
  slots: SlotReader | null,
): AttachmentStatus {
  const problems: string[] = [];
  const kernel: KernelView = {};
  kernel.inForce = slots?.inForce(r.attachId);
  if (!kernel.inForce) problems.push("the pinned maps have no entry for its attach id");
  else if (kernel.inForce.policy !== r.policy) {
    problems.push(
      `the kernel enforces slot ${kernel.inForce.slot} (${
        kernel.inForce.policy ?? "no recorded policy"
      }), the record says policy ${r.policy}`,
    );
  }
  const hasLink = r.kind !== "interface" || r.link;
  if (hasLink) {
    const link = openPinnedLink(pinOf(r, pins));
    if (!link) problems.push("its link is not pinned any more: the filter is gone");
    else {
      try {
        const s = linkState(link);
        kernel.link = { id: s.id, progId: s.progId, ifindex: s.ifindex, defunct: s.defunct };
        if (s.defunct) problems.push("its interface is gone (the link is defunct)");
        else if (s.ifindex !== r.ifindex) {
          problems.push(`the link is on ifindex ${s.ifindex}, the record says ${r.ifindex}`);
        }
        if (!s.defunct && !isTinyfwProgram(s.progId)) {
          problems.push(`the link runs program ${s.progId}, which is not a tinyfw program`);
        }
      } finally {
        link.close();
      }
    }
  }
  if (r.kind === "interface") {
    try {
      const q = xdpQuery(r.ifindex);
      kernel.attachedProgId = q.progId || q.driverId || q.skbId || 0;
      if (!kernel.attachedProgId) problems.push("the interface carries no XDP program");
      else if (kernel.link && kernel.link.progId !== kernel.attachedProgId) {
        problems.push(
          `the interface runs program ${kernel.attachedProgId}, its link ${kernel.link.progId}`,
        );
      }
      const learner = tcEgressProgram(r.ifindex);
      kernel.learnerProgId = learner?.progId ?? null;
      if (r.learner && !learner) problems.push("no flow learner on its tc egress hook");
    } catch {
      problems.push(`interface ${r.iface} (ifindex ${r.ifindex}) is not here`);
    }
  }
  return { record: r, kernel, problems };
}

function isTinyfwProgram(id: number): boolean {
  try {
    return progInfo({ id }).name === PROGRAM_NAME;
  } catch {
    return false;
  }
}

/** The counters of the recorded slots (pinned `counters` map) plus the carried totals. */
function readCounters(pins: PinSet, state: AgentState, problems: string[]): RuleCounter[] {
  let map: BpfMap;
  try {
    map = new BpfMap(objGet(`${pins.mapsDir}/counters`), true);
  } catch {
    if (state.policies.length) problems.push("the counters map is not pinned: no counts");
    return new CarriedCounters(state.carried).with([]);
  }
  try {
    const read = (b: number, n: number) => readCounterRange(map, b, n);
    const live = state.policies.flatMap((p) => recordedCounts(read, p));
    return new CarriedCounters(state.carried).with(live);
  } finally {
    map.close();
  }
}

/** The report as text, for people. */
export function formatStatus(s: Status): string {
  const out: string[] = [];
  out.push(
    s.agent.running
      ? `agent: running (pid ${s.agent.pid ?? "?"})`
      : s.state
      ? "agent: not running; its filters stay as it left them"
      : "agent: not running",
  );
  if (s.state) {
    out.push(
      `pins: ${s.pinPath} (tinyfw ${s.state.version}, layout ${s.state.layout}` +
        `${s.state.layoutMatches ? "" : ", not this tinyfw's"}; recorded ${s.state.written}` +
        `${s.state.keepOnExit ? "; --keep-on-exit" : ""})`,
    );
  } else out.push(`pins: ${s.pinPath}: no recorded state`);
  out.push("", `attachments (${s.attachments.length}):`);
  for (const a of s.attachments) out.push(`  ${describe(a)}`);
  if (s.policies.length) {
    out.push("", "policies:");
    for (const p of s.policies) {
      out.push(`  ${p.policy} (slot ${p.slot}): ${p.rules} rules, default ${p.defaultAction}`);
    }
  }
  const counted = s.counters.filter((c) => c.packets > 0n);
  out.push("", `counters (${counted.length} with packets):`);
  for (const c of counted.sort((a, b) => (a.policy + a.rule).localeCompare(b.policy + b.rule))) {
    out.push(
      `  ${c.policy}/${c.rule ?? "(default)"} ${c.direction} ${c.action}: ` +
        `${c.packets.toLocaleString("en-US")} packets, ${c.bytes.toLocaleString("en-US")} bytes`,
    );
  }
  const problems = [
    ...s.attachments.flatMap((a) => a.problems.map((p) => `${name(a.record)}: ${p}`)),
    ...s.problems,
  ];
  out.push("");
  if (problems.length) {
    out.push(`where the records and the kernel disagree (${problems.length}):`);
    for (const p of problems) out.push(`  ${p}`);
  } else out.push("the records and the kernel agree");
  return out.join("\n");
}

function name(r: AttachmentRecord): string {
  if (r.kind === "interface") return r.iface;
  if (r.kind === "veth") return `${r.iface} (unclaimed veth)`;
  return `${r.container.name} ${r.side} (${r.hostIface})`;
}

function describe(a: AttachmentStatus): string {
  const r = a.record;
  const prog = a.kernel.link?.progId ?? a.kernel.attachedProgId;
  const where = r.kind === "interface"
    ? `interface ${r.iface}`
    : r.kind === "veth"
    ? `veth ${r.iface} (unclaimed)`
    : `container ${r.container.name} [${r.container.namespace}/${r.container.id.slice(0, 12)}] ` +
      `${r.side} on ${r.side === "egress" ? r.hostIface : `ifindex ${r.ifindex} in its namespace`}`;
  const link = a.kernel.link
    ? `link ${a.kernel.link.id}`
    : r.kind === "interface" && !r.link
    ? "netlink"
    : "no link";
  const gen = a.kernel.inForce ? `, generation ${a.kernel.inForce.generation}` : "";
  return `${where}: ${r.mode}, program ${prog ?? "none"}, ${link}, policy ${r.policy}${gen}` +
    (a.problems.length ? " (see below)" : "");
}

/** The report as JSON (bigints as numbers when exact, else strings). */
export function statusJson(s: Status): string {
  return JSON.stringify(
    s,
    (_k, v) =>
      typeof v === "bigint" ? (Number.isSafeInteger(Number(v)) ? Number(v) : v.toString()) : v,
  );
}
