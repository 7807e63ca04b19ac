/**
 * The agent: owns the loaded data path, the installed policies, the host
 * interfaces (`host_interfaces.ts`) and containers mode, from start through
 * reloads to a clean detach (or, with `--keep-on-exit`, leaving every filter
 * enforcing). Everything it attaches is pinned under `--pin-path` and
 * recorded (`persist/`), so that a crash or SIGKILL leaves every filter
 * enforcing and the next agent adopts it (`persist/leftovers.ts`).
 *
 * Start-up checks everything before it attaches anything (the policy file is
 * valid, interfaces exist, no foreign XDP program is in the way, the pins are
 * of this map layout), then attaches interface by interface. If one fails, a
 * first start rolls back what it attached, and a start that found an earlier
 * run's filters leaves everything enforcing: a failed start never leaves the
 * host half configured, nor unfiltered. What an earlier agent left is switched to the new policy with
 * one generation flip, then to new program instances link by link, each
 * atomically; nothing passes unfiltered and nothing is attached twice.
 *
 * A reload installs the new policies beside the old ones, switches every
 * attachment with one generation flip (DATAPATH.md §5), waits a grace period
 * for packets still being decided by the old ones, and only then removes them.
 * An invalid file changes nothing.
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import { ConfigError, describeError, RuntimeError, VERSION } from "../base/mod.ts";
import { RtnetlinkClient } from "../netlink/mod.ts";
import { BpfError, EACCES, EINVAL, EPERM } from "../ffi/mod.ts";
import {
  AttachIds,
  BpffsNotMountedError,
  Datapath,
  type DropEvent,
  EventReader,
  formatDropEvent,
  type InstalledPolicy,
  type LoadedProgram,
  PolicySlots,
  samplesLost,
  sumPerCpu,
  u32Key,
  type XdpMode,
  xdpOccupant,
} from "../datapath/mod.ts";
import { counterAt, DIR_INGRESS, STAT_COUNT } from "../abi/mod.ts";
import {
  type CompiledPolicy,
  compilePolicy,
  type ContainerIdentity,
  diffPolicy,
  fallbackSelection,
  fileError,
  formatDiagnostic,
  formatDiff,
  loadPolicyFile,
  type LoadResult,
  parsePolicyText,
  type Policy,
  type PolicySet,
  readPolicyFile,
  requireValid,
  selectForInterface,
  selectionForContainer,
  type ValidFile,
} from "../policy/mod.ts";
import { type AttachLatency, ContainersMode, type SlotSelection } from "../containers/mod.ts";
import {
  type AgentState,
  type AttachmentRecord,
  layoutId,
  Leftovers,
  PinSet,
  type PolicyRecord,
  STATE_FORMAT,
  StateError,
  StateFiles,
  type StateHeader,
} from "../persist/mod.ts";
import { HostInterfaces, removeLearner, type Target } from "./host_interfaces.ts";
import { CarriedCounters, installedCounts, recordedCounts, type RuleCounter } from "./counters.ts";

export type { RuleCounter } from "./counters.ts";

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
  /** The bpffs directory of the pins (`--pin-path`). */
  readonly pinPath: string;
  /** Leave every filter enforcing at exit (`--keep-on-exit`). */
  readonly keepOnExit?: boolean;
  /** The locks the agent holds (recorded in the state, for `status` and `detach`). */
  readonly lock: string;
  readonly log: Logger;
  /**
   * Called once the policy file and the interfaces are checked, before
   * anything is touched (the metrics listener binds here): what it throws
   * ends the start with nothing changed.
   */
  readonly prepare?: () => Promise<void>;
}

/** Reload outcomes since start, and the last one. */
export interface ReloadStats {
  ok: number;
  failed: number;
  /** The last load (the one at start, or a reload): whether it took effect, how long, when. */
  last?: { ok: boolean; seconds: number; at: number };
}

/** How long an old policy stays installed after a switch, for packets in flight. */
const GRACE_MS = 50;

/** The policies in force: which one each interface uses, and where each is installed. */
interface Enforcement {
  set: PolicySet | null;
  byIface: Map<string, Policy>;
  installed: Map<Policy, InstalledPolicy>;
}

/** Non-rule outcomes of the data path (`stats` map), by metric label. */
export const OUTCOMES: readonly [string, number][] = [
  ["non_ip", 0],
  ["malformed", 1],
  ["neighbour_discovery", 2],
  ["unconfigured", 3],
  ["reply", 4],
  ["audit_pass", 5],
];

/** The running agent. */
export class Agent {
  readonly #log: Logger;
  readonly #dp: Datapath;
  readonly #slots: PolicySlots;
  readonly #ids: AttachIds;
  readonly #pins: PinSet;
  readonly #files: StateFiles;
  readonly #opts: AgentOptions;
  readonly #host: HostInterfaces;
  #now: Enforcement;
  readonly #carried: CarriedCounters;
  /** An earlier agent's slots, still enforced by what has not been adopted yet. */
  #oldSlots: readonly PolicyRecord[];
  #reloading: Promise<unknown> = Promise.resolve();
  /** The text of the policy file in force (to skip reloads of an unchanged file). */
  #loadedText: string | null = null;
  readonly reloads: ReloadStats = { ok: 0, failed: 0 };
  readonly #learner: LoadedProgram;
  readonly #events: EventReader;
  #containers?: ContainersMode;
  #recorded = "";
  /** Called with each container's time from event to filtered (metrics). */
  onContainerLatency?: (l: Pick<AttachLatency, "sincePublishedMs">) => void;

  private constructor(
    opts: AgentOptions,
    parts: {
      dp: Datapath;
      slots: PolicySlots;
      ids: AttachIds;
      pins: PinSet;
      files: StateFiles;
      now: Enforcement;
      previous: AgentState | null;
    },
  ) {
    this.#opts = opts;
    this.#log = opts.log;
    this.#dp = parts.dp;
    this.#slots = parts.slots;
    this.#ids = parts.ids;
    this.#pins = parts.pins;
    this.#files = parts.files;
    this.#now = parts.now;
    this.#carried = new CarriedCounters(parts.previous?.carried ?? []);
    this.#oldSlots = parts.previous?.policies ?? [];
    this.#learner = parts.dp.tcLearner();
    this.#host = new HostInterfaces({
      dp: parts.dp,
      pins: parts.pins,
      ids: parts.ids,
      log: opts.log,
      learner: this.#learner,
    });
    this.#events = EventReader.open(parts.dp.maps.events, (e) => this.#logDrop(e), {
      onError: (e) =>
        this.#log.warn("a drop sample could not be logged: {error}", { error: describeError(e) }),
    });
    this.#events.start().catch((e) =>
      this.#log.error("drop samples stopped: {error}", { error: describeError(e) })
    );
  }

  /** Checks, loads, installs the policies and attaches to every interface, or changes nothing. */
  static async start(opts: AgentOptions): Promise<Agent> {
    const log = opts.log;
    const started = performance.now();
    const loaded = opts.policyFile ? validSet(opts.policyFile, log) : null;
    const targets = checkInterfaces(opts.ifaces);
    await opts.prepare?.();
    const pins = new PinSet(opts.pinPath);
    const files = new StateFiles(opts.pinPath);
    const previous = readPrevious(files, pins);
    ensurePins(pins);
    const dp = loadDatapath(pins);
    const ids = new AttachIds(dp.maps.attach.maxEntries);
    const slots = new PolicySlots(dp);
    let left: Leftovers;
    let now: Enforcement;
    try {
      left = Leftovers.find(pins, previous, ids, log);
      if (previous) {
        slots.adopt(previous.policies);
        // What a crashed agent wrote for a policy it never recorded is garbage.
        const known = new Set(previous.policies.map((p) => p.slot));
        const swept = slots.sweep((slot) => known.has(slot));
        if (swept) log.info("removed {n} map entries of unrecorded policy slots", { n: swept });
      }
      if (!left.empty || left.defunct) {
        log.info("found the pins of an earlier run under {path}: adopting them", {
          path: opts.pinPath,
          defunct_collected: left.defunct,
        });
      }
      now = enforce(slots, loaded, opts.ifaces, log, { containers: !!opts.containers });
    } catch (e) {
      dp.close();
      throw e instanceof ConfigError || e instanceof RuntimeError ? e : new ConfigError(
        `The policy could not be installed: ${describeError(e)}.`,
        { cause: e },
      );
    }
    slots.setAudit(opts.audit ?? false);
    if (opts.audit) log.warn("audit mode: nothing is dropped; what would be is counted and logged");
    const agent = new Agent(opts, { dp, slots, ids, pins, files, now, previous });
    agent.#loadedText = loaded?.text ?? null;
    const seconds = (performance.now() - started) / 1000;
    agent.reloads.last = { ok: true, seconds, at: Date.now() / 1000 };
    agent.#recordPolicies();
    const inherited = !left.empty || previous !== null;
    try {
      agent.#attachInterfaces(targets, left);
      if (opts.containers) {
        agent.#startContainers(opts.containers, left);
      } else {
        left.collectContainers(pins);
        await agent.#releaseOldSlots();
      }
      agent.#recordAttachments();
    } catch (e) {
      // Fail closed: where an earlier run's filters were found (and maybe adopted), what is
      // enforcing stays, recorded for the next agent; a first start undoes what it did.
      if (inherited) log.warn("start-up failed: leaving every filter in place for the next agent");
      await agent.stop({ keep: inherited });
      throw e;
    }
    return agent;
  }

  /**
   * Attaches every interface, adopting the links an earlier agent left: those
   * switch to the new policies with one generation flip first (their old
   * programs read the same attach entries), then to the new instances.
   */
  #attachInterfaces(targets: readonly Target[], left: Leftovers): void {
    const planned = this.#host.plan(targets, left);
    const slotOf = (iface: string) => this.#now.installed.get(this.#now.byIface.get(iface)!)!.slot;
    const adopted = planned.filter((p) => p.adopted);
    if (adopted.length) {
      this.#slots.switchAttachments(
        adopted.map((p) => ({ attachId: p.attachId, slot: slotOf(p.target.link.name), dir: 0 })),
      );
    }
    for (const p of planned) {
      const name = p.target.link.name;
      if (!p.adopted) this.#slots.configureAttachment(p.attachId, slotOf(name), DIR_INGRESS);
      this.#host.attach(p, this.#opts.xdpMode, this.#now.byIface.get(name)!.name);
      this.#recordAttachments();
    }
    for (const l of left.collectHosts()) {
      const r = l.record;
      if (r?.kind === "interface") {
        try {
          removeLearner(l.ifindex, r.learner);
        } catch (e) {
          this.#log.warn("could not remove the learner of {iface}: {error}", {
            iface: r.iface,
            error: describeError(e),
          });
        }
      }
    }
  }

  #startContainers(
    c: { readonly socket: string; readonly namespaces: readonly string[] },
    left: Leftovers,
  ): void {
    const containers = new ContainersMode({
      socket: c.socket,
      namespaces: c.namespaces,
      xdpMode: this.#opts.xdpMode,
      log: this.#log,
      dp: this.#dp,
      slots: this.#slots,
      ids: this.#ids,
      pins: this.#pins,
      left,
      select: (identity) => this.#selectContainer(this.#now, identity),
      onChange: () => this.#recordAttachments(),
      onSettled: () => void this.#releaseOldSlots(),
    });
    containers.onLatency = (l) => this.onContainerLatency?.(l);
    this.#containers = containers;
    containers.start();
  }

  /**
   * Frees the earlier agent's slots once nothing enforces them any more (all
   * its attachments adopted or collected): their counts are carried.
   */
  async #releaseOldSlots(): Promise<void> {
    if (this.#oldSlots.length === 0) return;
    await new Promise((r) => setTimeout(r, GRACE_MS));
    const old = this.#oldSlots;
    this.#oldSlots = [];
    const read = (b: number, n: number) => this.#slots.readCounters(b, n);
    for (const r of old) this.#carried.add(recordedCounts(read, r));
    this.#slots.releaseAdopted(old);
    this.#recordPolicies();
    this.#log.debug("released {n} policy slots of the earlier run", { n: old.length });
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

  // --- the state ----------------------------------------------------------

  #header(): StateHeader {
    return {
      format: STATE_FORMAT,
      layout: layoutId(),
      version: VERSION,
      pid: Deno.pid,
      lock: this.#opts.lock,
      pinPath: this.#opts.pinPath,
      keepOnExit: this.#opts.keepOnExit ?? false,
      written: new Date().toISOString(),
    };
  }

  /** Records the slots in use: the policies in force and the earlier agent's, if any are left. */
  #recordPolicies(): void {
    const records: PolicyRecord[] = [...this.#oldSlots];
    for (const inst of this.#now.installed.values()) records.push(policyRecord(inst));
    this.#files.writePolicies(this.#header(), records, this.#carried.records());
  }

  /** Records every attachment (only when they changed). */
  #recordAttachments(): void {
    const records: AttachmentRecord[] = [
      ...this.#host.records(),
      ...this.#containers?.records() ?? [],
    ];
    const text = JSON.stringify(records);
    if (text === this.#recorded) return;
    this.#recorded = text;
    this.#files.writeAttachments(this.#header(), records);
  }

  // --- reloads --------------------------------------------------------------

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
    const file = this.#opts.policyFile;
    if (!file) {
      this.#log.info("{reason}: no policy file (--policy) to reload", { reason });
      return false;
    }
    const log = this.#log;
    const started = performance.now();
    // The same reader as start-up and `tinyfw check`, in two steps so that an
    // unchanged file costs no parse.
    const read = readPolicyFile(file);
    if (!read.ok) return this.#rejected(reason, fileError(read.error, file), started);
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
      return this.#rejected(reason, `${result.errors.length} error(s) in ${file}`, started);
    }
    // Container attachments change only between reloads, never during one.
    type Switched = { error: string } | { old: Enforcement; next: Enforcement };
    const switched = await this.#exclusive((): Switched => {
      let next: Enforcement;
      try {
        next = enforce(this.#slots, result, this.#host.all.map((a) => a.iface), log, {
          containers: !!this.#containers,
        });
      } catch (e) {
        return { error: describeError(e) };
      }
      const plan = this.#containers?.planSwitch((id) => this.#selectContainer(next, id));
      this.#slots.switchAttachments([
        ...this.#host.all.map((a) => ({
          attachId: a.attachId,
          slot: next.installed.get(next.byIface.get(a.iface)!)!.slot,
          dir: DIR_INGRESS,
        })),
        ...plan?.changes ?? [],
      ]);
      const old = this.#now;
      this.#now = next;
      for (const a of this.#host.all) a.policy = next.byIface.get(a.iface)!.name;
      plan?.commit();
      return { old, next };
    });
    if ("error" in switched) return this.#rejected(reason, switched.error, started);
    const { old, next } = switched;
    const installedMs = performance.now() - started;
    this.#loadedText = text;
    this.#logChanges(old, next);
    this.#recordPolicies();
    this.#recordAttachments();
    // Packets that read the old generation just before the flip finish within
    // microseconds; the old entries go only after they surely have.
    await new Promise((r) => setTimeout(r, GRACE_MS));
    for (const inst of old.installed.values()) {
      this.#carried.add(installedCounts(this.#slots, inst));
      this.#slots.remove(inst);
    }
    this.#recordPolicies();
    this.reloads.ok++;
    this.reloads.last = { ok: true, seconds: installedMs / 1000, at: Date.now() / 1000 };
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

  #rejected(reason: string, why: string, started: number): boolean {
    this.reloads.failed++;
    this.reloads.last = {
      ok: false,
      seconds: (performance.now() - started) / 1000,
      at: Date.now() / 1000,
    };
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
    for (const a of this.#host.all) {
      const from = old.byIface.get(a.iface)!.name;
      const to = next.byIface.get(a.iface)!.name;
      if (from !== to) {
        this.#log.info("{iface} now uses policy {to} (was {from})", { iface: a.iface, from, to });
        changes++;
      }
    }
    if (!changes) this.#log.info("policy file reloaded: no changes");
  }

  // --- what metrics and logs read -------------------------------------------

  /** Every counter: carried over reloads and restarts, plus the slots in force. */
  counters(): RuleCounter[] {
    // Concatenated, not pushed with spread: a policy has up to 200,002 counters, more
    // arguments than a call can take.
    const read = (b: number, n: number) => this.#slots.readCounters(b, n);
    const live = [
      ...[...this.#now.installed.values()].map((inst) => installedCounts(this.#slots, inst)),
      ...this.#oldSlots.map((r) => recordedCounts(read, r)),
    ].flat();
    return this.#carried.with(live);
  }

  /** The data path's non-rule outcomes (`stats`), summed over CPUs, by metric label. */
  outcomes(): Record<string, bigint> {
    const out: Record<string, bigint> = {};
    for (const [label, index] of OUTCOMES) {
      if (index >= STAT_COUNT) continue;
      const v = this.#dp.maps.stats.lookupPerCpu(u32Key(index));
      out[label] = v ? sumPerCpu(v)[0] ?? 0n : 0n;
    }
    return out;
  }

  /** Drop samples lost (over the per-CPU budget, or the ring full). */
  samplesLost(): bigint {
    return samplesLost(this.#dp);
  }

  /** Every attachment, by kind and mode. */
  attachments(): { kind: "interface" | "container" | "veth"; mode: XdpMode }[] {
    return [
      ...this.#host.all.map((a) => ({ kind: "interface" as const, mode: a.mode })),
      ...(this.#containers?.records() ?? []).map((r) => ({ kind: r.kind, mode: r.mode })),
    ];
  }

  /** Ready: every interface attached, and in containers mode the first list of tasks handled. */
  ready(): boolean {
    return this.#host.all.length === this.#opts.ifaces.length &&
      (this.#containers?.settled ?? true);
  }

  /** Resolves once no reload is running. */
  async idle(): Promise<void> {
    await this.#reloading;
  }

  /** Logs one drop sample: where, the container, the 5-tuple, and the policy and rule that decided. */
  #logDrop(e: DropEvent): void {
    const a = this.#host.all.find((x) => x.attachId === e.attachId);
    const owner = a ? undefined : this.#containers?.describeAttachment(e.attachId);
    const who = this.#ruleOfCounter(e.counter);
    this.#log.info(
      `${e.kind === "audit" ? "would drop" : "dropped"} {packet} on {iface} by {policy}/{rule}`,
      {
        // formatDropEvent starts with the kind ("drop ...", "audit ..."): said by the verb here.
        packet: formatDropEvent(e).replace(/^\S+ /, ""),
        iface: a?.iface ?? owner?.where ?? `attachment ${e.attachId}`,
        policy: who?.policy ?? "?",
        rule: who?.rule ?? "?",
        container_id: owner?.container?.id,
        container_name: owner?.container?.name,
        namespace: owner?.container?.namespace,
      },
    );
  }

  /** The policy and rule (or "(default)") a counter index belongs to, among the policies in force. */
  #ruleOfCounter(counter: number): { policy: string; rule: string } | null {
    for (const inst of this.#now.installed.values()) {
      const i = counter - inst.counterBase;
      if (i < 0 || i >= inst.compiled.counterCount) continue;
      const rules = inst.compiled.policy.rules;
      const { rule } = counterAt(rules.length, i);
      return {
        policy: inst.compiled.policy.name,
        rule: rule === null ? "(default)" : rules[rule].name,
      };
    }
    return null;
  }

  // --- exit -----------------------------------------------------------------

  /**
   * Detaches every program this agent attached and removes its pins and state
   * (SIGINT/SIGTERM), or, with `keep` (`--keep-on-exit` by default), leaves
   * every filter enforcing and recorded for the next agent.
   */
  async stop(opts: { keep?: boolean } = {}): Promise<void> {
    const keep = opts.keep ?? this.#opts.keepOnExit ?? false;
    await this.#containers?.stop({ keep });
    if (keep) {
      this.#recordAttachments();
      this.#recordPolicies();
      this.#host.keep();
      this.#log.info("leaving every filter enforcing (--keep-on-exit); pins under {path}", {
        path: this.#opts.pinPath,
      });
    } else {
      this.#host.stop();
    }
    for (const c of this.counters()) {
      if (!c.packets) continue;
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
    if (!keep) {
      this.#pins.remove();
      this.#files.remove();
    }
  }
}

function policyRecord(inst: InstalledPolicy): PolicyRecord {
  const policy = inst.compiled.policy;
  return {
    slot: inst.slot,
    policy: policy.name,
    defaultAction: policy.defaultAction,
    counterBase: inst.counterBase,
    counterCount: inst.compiled.counterCount,
    rules: policy.rules.map((r) => ({ name: r.name, action: r.action })),
    fastTables: inst.keys.fastTables,
  };
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
 * What an earlier agent recorded under this pin path, or null. Pins of
 * another map layout (or format) cannot be adopted: refused in one sentence.
 */
function readPrevious(files: StateFiles, pins: PinSet): AgentState | null {
  let state: AgentState | null;
  try {
    state = files.read();
  } catch (e) {
    if (!(e instanceof StateError)) throw e;
    throw new RuntimeError(
      `The state tinyfw keeps beside its pins is damaged (${e.message}); remove the pins with ` +
        `'tinyfw detach --pin-path ${pins.root}' (their filters stop) and start again.`,
    );
  }
  if (state && (state.header.format !== STATE_FORMAT || state.header.layout !== layoutId())) {
    throw new RuntimeError(
      `The pins under ${pins.root} were left by tinyfw ${state.header.version} with another map ` +
        `layout (${state.header.layout}, this one's is ${layoutId()}), which this version cannot ` +
        `adopt; remove them with that version's or this one's 'tinyfw detach --pin-path ` +
        `${pins.root}' (their filters stop) and start again.`,
    );
  }
  return state;
}

/** Makes the pin directories, or says in one sentence that bpffs is not mounted. */
function ensurePins(pins: PinSet): void {
  try {
    pins.ensure();
  } catch (e) {
    if (e instanceof BpffsNotMountedError) {
      throw new RuntimeError(
        `${e.path} is not on a BPF file system, so tinyfw cannot pin its filters there: mount ` +
          `one (mount -t bpf bpf /sys/fs/bpf) or give another --pin-path.`,
      );
    }
    throw e;
  }
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

/** Loads the data path with its maps pinned (reused when an earlier agent pinned them). */
function loadDatapath(pins: PinSet): Datapath {
  try {
    return Datapath.load({ pinDir: pins.mapsDir });
  } catch (e) {
    if (e instanceof BpfError && (e.errno === EPERM || e.errno === EACCES)) {
      throw new RuntimeError(
        `The kernel refused to load tinyfw's XDP program (${e.message}): run as root with BPF enabled.`,
        { cause: e },
      );
    }
    if (e instanceof BpfError && e.errno === EINVAL && pins.hasMaps()) {
      throw new RuntimeError(
        `The maps pinned under ${pins.mapsDir} do not match this tinyfw's (${e.message}); ` +
          `remove them with 'tinyfw detach --pin-path ${pins.root}' (their filters stop) and start again.`,
        { cause: e },
      );
    }
    throw e;
  }
}
