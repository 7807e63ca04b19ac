/**
 * The agent: owns the loaded data path, the installed policies and the XDP
 * attachments on host interfaces, from start through reloads to a clean detach.
 *
 * Start-up checks everything before it attaches anything (the policy file is
 * valid, interfaces exist, no foreign XDP program is in the way), then attaches
 * interface by interface and rolls back what it attached if one fails: the
 * host is never left half configured by a failed start.
 *
 * A reload installs the new policies beside the old ones, switches every
 * attachment with one generation flip (DATAPATH.md §5), waits a grace period
 * for packets still being decided by the old ones, and only then removes them.
 * An invalid file changes nothing.
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import { ConfigError, RuntimeError } from "./errors.ts";
import { RtnetlinkClient } from "./netlink/rtnetlink.ts";
import type { Link } from "./netlink/link.ts";
import { BpfError } from "./ffi/errors.ts";
import { type DropEvent, EventReader, formatDropEvent } from "./datapath/events.ts";
import { attachTcEgress, detachTcEgress, type TcEgressAttachment } from "./datapath/tc.ts";
import {
  Datapath,
  type LoadedProgram,
  xdpDetach,
  type XdpMode,
  type XdpProgram,
} from "./datapath/object.ts";
import {
  attachProgram,
  type AttachProgramOptions,
  attemptedMode,
  xdpOccupant,
} from "./datapath/attach.ts";
import { type InstalledPolicy, PolicySlots } from "./datapath/policy_slots.ts";
import { DIR_INGRESS } from "./datapath/layout.ts";
import { type CompiledPolicy, compilePolicy } from "./policy/compile.ts";
import { diffPolicy, formatDiff } from "./policy/diff.ts";
import {
  fileError,
  formatDiagnostic,
  loadPolicyFile,
  type LoadResult,
  parsePolicyText,
  readPolicyFile,
  requireValid,
  type ValidFile,
} from "./policy/load.ts";
import {
  type ContainerIdentity,
  fallbackSelection,
  selectForInterface,
  selectionForContainer,
} from "./policy/select.ts";
import type { Policy, PolicySet } from "./policy/types.ts";
import { ContainersMode, type SlotSelection } from "./containers/mode.ts";

/** What the agent is asked to do. */
export interface AgentOptions {
  /** Host interfaces to filter (ingress). */
  readonly ifaces: readonly string[];
  /** `auto` tries native, then generic. */
  readonly xdpMode: "auto" | XdpMode;
  /** The policy file; absent: the built-in default policy everywhere. */
  readonly policyFile?: string;
  /** Pass what the rules deny (still counted and sampled). */
  readonly audit?: boolean;
  /** Containers mode (`--cmode`): follow containerd at this socket, in these namespaces (empty: all). */
  readonly containers?: { readonly socket: string; readonly namespaces: readonly string[] };
  readonly log: Logger;
}

/** Packets and bytes counted for one rule (or the default) of a policy, in one direction. */
export interface RuleCounter {
  policy: string;
  /** The rule's name, or null for the default action. */
  rule: string | null;
  direction: "ingress" | "egress";
  packets: bigint;
  bytes: bigint;
}

/** Reload outcomes since start. */
export interface ReloadStats {
  ok: number;
  failed: number;
}

/** How long an old policy stays installed after a switch, for packets in flight. */
const GRACE_MS = 50;

/** One interface the agent filters. */
interface Attachment {
  readonly iface: string;
  readonly ifindex: number;
  readonly attachId: number;
  readonly mode: XdpMode;
  readonly prog: XdpProgram;
  /** The flow learner on the interface's egress (replies to the host's own traffic). */
  learner?: TcEgressAttachment;
}

/** An interface checked and ready to attach. */
interface Target {
  readonly link: Link;
  /** A tinyfw program left by an earlier run, replaced atomically. */
  readonly stale?: { id: number; mode: XdpMode };
}

/** The policies in force: which one each interface uses, and where each is installed. */
interface Enforcement {
  set: PolicySet | null;
  byIface: Map<string, Policy>;
  installed: Map<Policy, InstalledPolicy>;
}

/** The running agent. */
export class Agent {
  readonly #log: Logger;
  readonly #dp: Datapath;
  readonly #slots: PolicySlots;
  readonly #policyFile?: string;
  #now: Enforcement;
  readonly #attachments: Attachment[] = [];
  /** Counts of removed installs, by policy/rule/direction, so counters survive reloads. */
  readonly #carried = new Map<string, { packets: bigint; bytes: bigint }>();
  #reloading: Promise<unknown> = Promise.resolve();
  /** The text of the policy file in force (to skip reloads of an unchanged file). */
  #loadedText: string | null = null;
  readonly reloads: ReloadStats = { ok: 0, failed: 0 };
  readonly #learner: LoadedProgram;
  readonly #events: EventReader;
  #containers?: ContainersMode;

  private constructor(opts: AgentOptions, dp: Datapath, slots: PolicySlots, now: Enforcement) {
    this.#log = opts.log;
    this.#policyFile = opts.policyFile;
    this.#dp = dp;
    this.#slots = slots;
    this.#now = now;
    this.#learner = dp.tcLearner();
    this.#events = EventReader.open(dp.maps.events, (e) => this.#logDrop(e), {
      onError: (e) =>
        this.#log.warn("a drop sample could not be logged: {error}", { error: String(e) }),
    });
    this.#events.start().catch((e) =>
      this.#log.error("drop samples stopped: {error}", { error: String(e) })
    );
  }

  /** Checks, loads, installs the policies and attaches to every interface, or changes nothing. */
  static async start(opts: AgentOptions): Promise<Agent> {
    const loaded = opts.policyFile ? validSet(opts.policyFile, opts.log) : null;
    const targets = checkInterfaces(opts.ifaces);
    const dp = loadDatapath();
    const slots = new PolicySlots(dp);
    let now: Enforcement;
    try {
      now = enforce(slots, loaded, opts.ifaces, opts.log, { containers: !!opts.containers });
    } catch (e) {
      dp.close();
      throw e instanceof ConfigError ? e : new ConfigError(
        `The policy could not be installed: ${e instanceof Error ? e.message : e}.`,
        { cause: e },
      );
    }
    if (opts.audit) {
      slots.setAudit(true);
      opts.log.warn("audit mode: nothing is dropped; what would be is counted and logged");
    }
    const agent = new Agent(opts, dp, slots, now);
    agent.#loadedText = loaded?.text ?? null;
    try {
      targets.forEach((t, i) => agent.#attach(t, i + 1, opts.xdpMode));
      if (opts.containers) {
        agent.#containers = new ContainersMode({
          socket: opts.containers.socket,
          namespaces: opts.containers.namespaces,
          xdpMode: opts.xdpMode,
          log: opts.log,
          dp,
          slots,
          firstAttachId: targets.length + 1,
          select: (identity) => agent.#selectContainer(agent.#now, identity),
        });
        agent.#containers.start();
      }
    } catch (e) {
      await agent.stop();
      throw e;
    }
    return agent;
  }

  /** The policy for a container (null: one without labels) among `now`'s, and its slot. */
  #selectContainer(now: Enforcement, identity: ContainerIdentity | null): SlotSelection {
    const { policy } = identity
      ? selectionForContainer(now.set, identity)
      : fallbackSelection(now.set);
    return { policy, slot: now.installed.get(policy)!.slot };
  }

  /** Containers mode, when on (for tests and status). */
  get containers(): ContainersMode | undefined {
    return this.#containers;
  }

  #attach(target: Target, attachId: number, want: "auto" | XdpMode): void {
    const { link, stale } = target;
    const policy = this.#now.byIface.get(link.name)!;
    this.#slots.configureAttachment(attachId, this.#now.installed.get(policy)!.slot, DIR_INGRESS);
    const prog = this.#dp.instance(attachId);
    if (stale) {
      this.#log.warn("replacing the tinyfw program (id {old}) an earlier run left on {iface}", {
        iface: link.name,
        old: stale.id,
      });
    }
    const opts: AttachProgramOptions = {
      want,
      stale,
      onNativeRefused: (e) =>
        this.#log.info("native XDP is not available on {iface} ({reason}); using generic mode", {
          iface: link.name,
          reason: e.message,
        }),
    };
    let mode: XdpMode;
    try {
      mode = attachProgram(link.index, prog.fd, opts);
    } catch (e) {
      prog.close();
      if (!(e instanceof BpfError)) throw e;
      const tried = attemptedMode(opts);
      throw new RuntimeError(
        `Could not attach to ${link.name} in ${tried} mode: ${e.message}` +
          (tried === "native" ? "; try --xdp-mode generic." : "."),
        { cause: e },
      );
    }
    // From here on, stop() detaches it.
    const attachment: Attachment = { iface: link.name, ifindex: link.index, attachId, mode, prog };
    this.#attachments.push(attachment);
    // Replies to what the host itself sends must pass a default-deny policy.
    attachment.learner = attachTcEgress(link.index, this.#learner.fd, { replace: true });
    this.#log.info("attached to {iface} in {mode} mode", {
      iface: link.name,
      ifindex: link.index,
      mode,
      program_id: prog.id,
      policy: policy.name,
    });
  }

  /**
   * Reloads the policy file (SIGHUP, or a change of the file): if it is valid,
   * every attachment switches to it at once; if not, every error is logged and
   * the policies in force stay. Reloads run one at a time. With `ifChanged`,
   * a file whose text is the one in force is not reloaded. Resolves to whether
   * the file's policies are now in force.
   */
  reload(reason: string, opts: { ifChanged?: boolean } = {}): Promise<boolean> {
    const next = this.#reloading.then(() => this.#reloadNow(reason, opts.ifChanged ?? false));
    this.#reloading = next.catch(() => {});
    return next;
  }

  async #reloadNow(reason: string, ifChanged: boolean): Promise<boolean> {
    const file = this.#policyFile;
    if (!file) {
      this.#log.info("{reason}: no policy file (--policy) to reload", { reason });
      return false;
    }
    const log = this.#log;
    const started = performance.now();
    // The same reader as start-up and `tinyfw check`, in two steps so that an
    // unchanged file costs no parse.
    const read = readPolicyFile(file);
    if (!read.ok) return this.#rejected(reason, fileError(read.error, file));
    const text = read.text;
    if (ifChanged && text === this.#loadedText) return true;
    const result: LoadResult = parsePolicyText(text, file);
    for (const w of result.warnings) {
      log.warn("{diagnostic}", { diagnostic: formatDiagnostic(w, file) });
    }
    if (!result.ok) {
      for (const e of result.errors) {
        log.error("{diagnostic}", { diagnostic: formatDiagnostic(e, file) });
      }
      return this.#rejected(reason, `${result.errors.length} error(s) in ${file}`);
    }
    // Container attachments change only between reloads, never during one.
    type Switched = { error: string } | { old: Enforcement; next: Enforcement };
    const switched = await this.#exclusive((): Switched => {
      let next: Enforcement;
      try {
        next = enforce(this.#slots, result, this.#attachments.map((a) => a.iface), log, {
          containers: !!this.#containers,
        });
      } catch (e) {
        return { error: e instanceof Error ? e.message : String(e) };
      }
      const plan = this.#containers?.planSwitch((id) => this.#selectContainer(next, id));
      this.#slots.switchAttachments([
        ...this.#attachments.map((a) => ({
          attachId: a.attachId,
          slot: next.installed.get(next.byIface.get(a.iface)!)!.slot,
          dir: DIR_INGRESS,
        })),
        ...plan?.changes ?? [],
      ]);
      const old = this.#now;
      this.#now = next;
      plan?.commit();
      return { old, next };
    });
    if ("error" in switched) return this.#rejected(reason, switched.error);
    const { old, next } = switched;
    const installedMs = performance.now() - started;
    this.#loadedText = text;
    this.#logChanges(old, next);
    // Packets that read the old generation just before the flip finish within
    // microseconds; the old entries go only after they surely have.
    await new Promise((r) => setTimeout(r, GRACE_MS));
    for (const inst of old.installed.values()) {
      this.#carry(inst);
      this.#slots.remove(inst);
    }
    this.reloads.ok++;
    log.info("policy reloaded ({reason}) in {ms} ms", {
      reason,
      ms: Math.round(installedMs),
      policies: [...next.installed.keys()].map((p) => p.name).join(","),
    });
    return true;
  }

  /** Runs `fn` where no container event is being handled (directly without containers mode). */
  #exclusive<T>(fn: () => T): Promise<T> {
    return this.#containers ? this.#containers.exclusive(fn) : Promise.resolve(fn());
  }

  #rejected(reason: string, why: string): boolean {
    this.reloads.failed++;
    this.#log.error("policy reload ({reason}) rejected: {why}; the policy in force is unchanged", {
      reason,
      why,
      failed_reloads: this.reloads.failed,
    });
    return false;
  }

  #logChanges(old: Enforcement, next: Enforcement): void {
    const before = new Map([...old.installed.keys()].map((p) => [p.name, p]));
    let changes = 0;
    for (const p of next.installed.keys()) {
      const was = before.get(p.name);
      if (!was) {
        this.#log.info("policy {policy} now in force ({rules} rules)", {
          policy: p.name,
          rules: p.rules.length,
        });
        changes++;
        continue;
      }
      const d = diffPolicy(was, p);
      if (d) {
        this.#log.info("{change}", { change: formatDiff(d) });
        changes++;
      }
    }
    for (const name of before.keys()) {
      if (![...next.installed.keys()].some((p) => p.name === name)) {
        this.#log.info("policy {policy} no longer in force", { policy: name });
        changes++;
      }
    }
    for (const a of this.#attachments) {
      const from = old.byIface.get(a.iface)!.name;
      const to = next.byIface.get(a.iface)!.name;
      if (from !== to) {
        this.#log.info("{iface} now uses policy {to} (was {from})", { iface: a.iface, from, to });
        changes++;
      }
    }
    if (!changes) this.#log.info("policy file reloaded: no changes");
  }

  /** Adds the final counts of `inst` to the carried totals. */
  #carry(inst: InstalledPolicy): void {
    const rules = inst.compiled.policy.rules;
    for (const c of this.#slots.counts(inst)) {
      if (!c.packets && !c.bytes) continue;
      const key = counterKey(
        inst.compiled.policy.name,
        c.rule < 0 ? null : rules[c.rule].name,
        c.dir,
      );
      const total = this.#carried.get(key) ?? { packets: 0n, bytes: 0n };
      total.packets += c.packets;
      total.bytes += c.bytes;
      this.#carried.set(key, total);
    }
  }

  /** Every counter with packets: carried over reloads plus the policies in force. */
  counters(): RuleCounter[] {
    const totals = new Map<string, { packets: bigint; bytes: bigint }>(
      [...this.#carried].map(([k, v]) => [k, { ...v }]),
    );
    for (const inst of this.#now.installed.values()) {
      const rules = inst.compiled.policy.rules;
      for (const c of this.#slots.counts(inst)) {
        const key = counterKey(
          inst.compiled.policy.name,
          c.rule < 0 ? null : rules[c.rule].name,
          c.dir,
        );
        const total = totals.get(key) ?? { packets: 0n, bytes: 0n };
        total.packets += c.packets;
        total.bytes += c.bytes;
        totals.set(key, total);
      }
    }
    return [...totals].filter(([, v]) => v.packets > 0n).map(([k, v]) => {
      const [policy, rule, dir] = k.split("\u0000");
      return {
        policy,
        rule: rule === "" ? null : rule,
        direction: dir === "0" ? "ingress" : "egress",
        packets: v.packets,
        bytes: v.bytes,
      };
    });
  }

  /** Resolves once no reload is running. */
  async idle(): Promise<void> {
    await this.#reloading;
  }

  /** Logs one drop sample: where, the 5-tuple, and the policy and rule that decided. */
  #logDrop(e: DropEvent): void {
    const a = this.#attachments.find((x) => x.attachId === e.attachId);
    const where = a?.iface ?? this.#containers?.describeAttachment(e.attachId);
    const who = this.#ruleOfCounter(e.counter);
    this.#log.info(
      `${e.kind === "audit" ? "would drop" : "dropped"} {packet} on {iface} by {policy}/{rule}`,
      {
        // formatDropEvent starts with the kind ("drop ...", "audit ..."): said by the verb here.
        packet: formatDropEvent(e).replace(/^\S+ /, ""),
        iface: where ?? `attachment ${e.attachId}`,
        policy: who?.policy ?? "?",
        rule: who?.rule ?? "?",
      },
    );
  }

  /** The policy and rule (or "(default)") a counter index belongs to, among the policies in force. */
  #ruleOfCounter(counter: number): { policy: string; rule: string } | null {
    for (const inst of this.#now.installed.values()) {
      const i = counter - inst.counterBase;
      if (i < 0 || i >= inst.compiled.counterCount) continue;
      const rules = inst.compiled.policy.rules;
      const r = Math.floor(i / 2);
      return {
        policy: inst.compiled.policy.name,
        rule: r < rules.length ? rules[r].name : "(default)",
      };
    }
    return null;
  }

  /** Detaches every program this agent attached (only if it is still the one attached). */
  async stop(): Promise<void> {
    await this.#containers?.stop();
    for (const a of this.#attachments.splice(0).reverse()) {
      try {
        if (a.learner) {
          detachTcEgress(a.ifindex, {
            progId: a.learner.progId,
            createdQdisc: a.learner.createdQdisc,
          });
        }
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
    for (const c of this.counters()) {
      this.#log.info("counted {packets} packets for {policy}/{rule} ({direction})", {
        policy: c.policy,
        rule: c.rule ?? "(default)",
        direction: c.direction,
        packets: Number(c.packets),
        bytes: Number(c.bytes),
      });
    }
    this.#events.consume(); // the last samples
    await this.#events.close();
    this.#learner.close();
    this.#dp.close();
  }
}

function counterKey(policy: string, rule: string | null, dir: number): string {
  return `${policy}\u0000${rule ?? ""}\u0000${dir}`;
}

/** Loads the policy file for start-up: warnings logged, errors thrown (exit 2). */
function validSet(file: string, log: Logger): ValidFile {
  return requireValid(
    loadPolicyFile(file),
    (line) => log.warn("{diagnostic}", { diagnostic: line }),
    "nothing was attached",
  );
}

/**
 * Selects a policy for every interface and installs each selected policy once
 * (nothing attached to them yet). On failure, removes what it installed.
 */
function enforce(
  slots: PolicySlots,
  loaded: { set: PolicySet; compiled?: CompiledPolicy[] } | null,
  ifaces: readonly string[],
  log: Logger,
  opts: { containers: boolean },
): Enforcement {
  const set = loaded?.set ?? null;
  const byIface = new Map(ifaces.map((i) => [i, selectForInterface(set, i)]));
  // Containers come and go: every policy they could select is installed ahead.
  const forContainers = opts.containers
    ? [...(set?.policies ?? []), fallbackSelection(set).policy]
    : [];
  // The loader compiled the file's policies already (to check they fit): reuse that.
  const compiledOf = new Map(
    (loaded?.compiled ?? []).map((c, i) => [loaded!.set.policies[i], c] as const),
  );
  const installed = new Map<Policy, InstalledPolicy>();
  try {
    for (const policy of new Set([...byIface.values(), ...forContainers])) {
      const started = performance.now();
      installed.set(policy, slots.install(compiledOf.get(policy) ?? compilePolicy(policy)));
      log.debug("policy {policy} installed: {rules} rules in {ms} ms", {
        policy: policy.name,
        rules: policy.rules.length,
        ms: Math.round(performance.now() - started),
      });
    }
  } catch (e) {
    for (const inst of installed.values()) slots.remove(inst);
    throw e;
  }
  for (const [iface, policy] of byIface) {
    log.info("{iface}: policy {policy} ({rules} rules, default {default})", {
      iface,
      policy: policy.name,
      rules: policy.rules.length,
      default: policy.defaultAction,
    });
  }
  return { set, byIface, installed };
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
      const there = xdpOccupant(link.index);
      if (there.kind === "none") return { link };
      if (there.kind === "tinyfw") return { link, stale: { id: there.id, mode: there.mode } };
      throw new RuntimeError(
        `Interface ${name} already has an XDP program that tinyfw did not install ` +
          `(id ${there.id}, name "${there.name}", ${there.mode} mode); tinyfw does not replace it: ` +
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
