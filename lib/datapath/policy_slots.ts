/**
 * Places compiled policies into the data plane: a free slot, a fresh counter
 * range, every map entry; and switches attachments between policies with the
 * one-word generation flip of DATAPATH.md §5.
 *
 * @module
 */

import type { CompiledPolicy } from "../policy/mod.ts";
import {
  ATTACH_LEARN,
  AttachValue,
  CounterBlock,
  counterOffset,
  COUNTERS_PER_BLOCK,
  decode,
  DIR_INGRESS,
  encode,
  FAST_TABLE_SIZE,
  FAST_TABLES,
  MAX_SLOTS,
  PolicyValue,
  SLOT_NONE,
  STATE_AUDIT,
  StateValue,
} from "../abi/mod.ts";
import {
  encodePolicyEntries,
  type FastTable,
  type MapEntries,
  type PolicyKeys,
} from "./entries.ts";
import { type BpfMap, type Datapath, type MapName, sumPerCpu, u32Key } from "./object.ts";
import { RangeAllocator } from "./ranges.ts";
import { BpfError, E2BIG, ENOSPC } from "../ffi/mod.ts";

/** A compiled policy written into the data plane. */
export interface InstalledPolicy {
  readonly slot: number;
  readonly counterBase: number;
  readonly compiled: CompiledPolicy;
  /** What to delete and free when it goes. */
  readonly keys: PolicyKeys;
}

/** Packets and bytes counted for one rule (or the default) in one direction. */
export interface RuleCount {
  /** Rule index, or -1 for the default action. */
  readonly rule: number;
  readonly dir: number;
  readonly packets: bigint;
  readonly bytes: bigint;
}

/** Owner of the slots, counters and generation of one {@link Datapath}. */
export class PolicySlots {
  readonly #dp: Datapath;
  readonly #freeSlots: number[] = [];
  /** Free `fast_l4` tables, 1-based. */
  readonly #freeTables: number[] = [];
  /** Counter blocks (COUNTERS_PER_BLOCK counters each): every policy owns whole blocks. */
  readonly #counterBlocks: RangeAllocator;

  constructor(dp: Datapath) {
    this.#dp = dp;
    this.#counterBlocks = new RangeAllocator(dp.maps.counters.maxEntries);
    for (let s = MAX_SLOTS - 1; s > SLOT_NONE; s--) this.#freeSlots.push(s);
    const tables = Math.floor(dp.maps.fast_l4.maxEntries / FAST_TABLE_SIZE);
    for (let t = Math.min(tables, FAST_TABLES); t >= 1; t--) this.#freeTables.push(t);
  }

  /**
   * Writes `compiled` into a free slot with zeroed counters; nothing is
   * attached to it yet. `plain` skips the fast paths (address hashes, fast L4
   * tables) and uses only the general LPM/hash structures: for tests.
   */
  install(compiled: CompiledPolicy, opts: { plain?: boolean } = {}): InstalledPolicy {
    const slot = this.#freeSlots.pop();
    if (slot === undefined) throw new Error(`all ${MAX_SLOTS - 1} policy slots are in use`);
    const firstBlock = this.#counterBlocks.allocate(blocksFor(compiled.counterCount));
    if (firstBlock === null) {
      this.#freeSlots.push(slot);
      throw new Error(
        `no room for ${compiled.counterCount} counters (capacity ${
          this.#dp.maps.counters.maxEntries * COUNTERS_PER_BLOCK
        })`,
      );
    }
    const counterBase = firstBlock * COUNTERS_PER_BLOCK;
    const free = opts.plain ? [] : [...this.#freeTables].reverse();
    const e = encodePolicyEntries(compiled, slot, counterBase, {
      fastTables: free,
      addrHash: !opts.plain,
      inlineClasses: !opts.plain,
    });
    const used = new Set(e.fast.map((f) => f.table));
    const rest = this.#freeTables.filter((t) => !used.has(t));
    this.#freeTables.splice(0, this.#freeTables.length, ...rest);
    const installed: InstalledPolicy = {
      slot,
      counterBase,
      compiled,
      keys: {
        lpmV4: keyOnly(e.lpmV4),
        lpmV6: keyOnly(e.lpmV6),
        addr4Hash: keyOnly(e.addr4Hash),
        addr6Hash: keyOnly(e.addr6Hash),
        ruleHash: keyOnly(e.ruleHash),
        portLpm: keyOnly(e.portLpm),
        fastTables: [...used],
      },
    };
    try {
      const maps = this.#dp.maps;
      this.#zeroCounters(counterBase, compiled.counterCount);
      for (const t of e.fast) this.#writeFastTable(t);
      write(maps.lpm_v4, e.lpmV4);
      write(maps.lpm_v6, e.lpmV6);
      write(maps.addr4_hash, e.addr4Hash);
      write(maps.addr6_hash, e.addr6Hash);
      write(maps.rule_hash, e.ruleHash);
      write(maps.port_lpm, e.portLpm);
      maps.policies.update(u32Key(slot), e.policy);
    } catch (err) {
      this.remove(installed);
      throw err;
    }
    return installed;
  }

  /**
   * Takes over slots an earlier agent left in use (recorded in its state,
   * `lib/persist/state.ts`): their slots, counter blocks and fast tables stay
   * out of use, with their entries as they are, until {@link releaseAdopted}.
   */
  adopt(slots: readonly AdoptedSlot[]): void {
    for (const a of slots) {
      const at = this.#freeSlots.indexOf(a.slot);
      if (at >= 0) this.#freeSlots.splice(at, 1);
      const first = a.counterBase / COUNTERS_PER_BLOCK;
      this.#counterBlocks.reserve(first, blocksFor(a.counterCount));
      const rest = this.#freeTables.filter((t) => !a.fastTables.includes(t));
      this.#freeTables.splice(0, this.#freeTables.length, ...rest);
    }
  }

  /**
   * Frees adopted slots no attachment uses any more: deletes their entries
   * (found by scanning the maps' keys for the slot), their `policies` value,
   * and frees their counters and fast tables.
   */
  releaseAdopted(slots: readonly AdoptedSlot[]): void {
    if (slots.length === 0) return;
    this.sweep((slot) => !slots.some((a) => a.slot === slot));
    for (const a of slots) {
      this.#dp.maps.policies.update(u32Key(a.slot), new Uint8Array(PolicyValue.size));
      this.#counterBlocks.free(a.counterBase / COUNTERS_PER_BLOCK, blocksFor(a.counterCount));
      this.#freeTables.push(...a.fastTables);
      if (!this.#freeSlots.includes(a.slot)) this.#freeSlots.push(a.slot);
    }
  }

  /**
   * Deletes, from every map keyed by slot, the entries of the slots `keep`
   * refuses: what a crashed agent wrote for a policy it never recorded, or
   * what adopted slots leave. Returns the number of entries deleted. It reads
   * every key of those maps (about a second for a million entries).
   */
  sweep(keep: (slot: number) => boolean): number {
    let deleted = 0;
    for (const [name, at] of SLOT_KEYS) {
      const map = this.#dp.maps[name];
      const doomed: Uint8Array[] = [];
      for (const key of map.keys()) {
        const view = new DataView(key.buffer, key.byteOffset);
        const slot = at.bigEndian
          ? view.getUint16(at.offset, false)
          : view.getUint16(at.offset, true);
        if (!keep(slot)) doomed.push(key);
      }
      if (doomed.length === 0) continue;
      const keys = new Uint8Array(doomed.length * map.keySize);
      doomed.forEach((k, i) => keys.set(k, i * map.keySize));
      deleted += map.deleteBatch(keys, doomed.length);
    }
    return deleted;
  }

  /** Deletes the entries of `installed` and frees its slot, counters and fast tables. */
  remove(installed: InstalledPolicy): void {
    const k = installed.keys;
    const maps = this.#dp.maps;
    maps.lpm_v4.deleteBatch(k.lpmV4.keys, k.lpmV4.count);
    maps.lpm_v6.deleteBatch(k.lpmV6.keys, k.lpmV6.count);
    maps.addr4_hash.deleteBatch(k.addr4Hash.keys, k.addr4Hash.count);
    maps.addr6_hash.deleteBatch(k.addr6Hash.keys, k.addr6Hash.count);
    maps.rule_hash.deleteBatch(k.ruleHash.keys, k.ruleHash.count);
    maps.port_lpm.deleteBatch(k.portLpm.keys, k.portLpm.count);
    this.#counterBlocks.free(
      installed.counterBase / COUNTERS_PER_BLOCK,
      blocksFor(installed.compiled.counterCount),
    );
    this.#freeTables.push(...k.fastTables);
    this.#freeSlots.push(installed.slot);
  }

  /** The active generation (0 or 1). */
  generation(): number {
    return this.#state().gen & 1;
  }

  /** Whether audit mode is on (`STATE_AUDIT`: what the rules deny passes, counted and sampled). */
  audit(): boolean {
    return (this.#state().flags & STATE_AUDIT) !== 0;
  }

  /**
   * Turns audit mode on or off for every attachment at once (docs/DATAPATH.md
   * §8). Only the flag changes: the generation word is written back as it is.
   */
  setAudit(on: boolean): void {
    const { gen, flags } = this.#state();
    const next = on ? flags | STATE_AUDIT : flags & ~STATE_AUDIT;
    this.#dp.maps.state.update(u32Key(0), encode(StateValue, { gen, flags: next }));
  }

  #state(): { gen: number; flags: number } {
    const v = this.#dp.maps.state.lookup(u32Key(0));
    if (!v) return { gen: 0, flags: 0 };
    const d = decode(StateValue, v);
    return { gen: Number(d.gen), flags: Number(d.flags) };
  }

  /**
   * Points attachment `attachId` at `slot` in both generations. For an
   * attachment that is not attached yet (or is being adopted as a whole).
   * `learn` sets ATTACH_LEARN: the program learns flows from the packets it
   * allows (containers mode, where both directions are filtered by tinyfw).
   */
  configureAttachment(
    attachId: number,
    slot: number,
    dir = DIR_INGRESS,
    opts: { learn?: boolean } = {},
  ): void {
    const flags = opts.learn ? ATTACH_LEARN : 0;
    this.#dp.maps.attach.update(
      u32Key(attachId),
      encode(AttachValue, { slot: [slot, slot], dir, flags }),
    );
  }

  /** Marks `attachId` unconfigured (its program, if still attached, passes everything). */
  clearAttachment(attachId: number): void {
    this.#dp.maps.attach.update(u32Key(attachId), encode(AttachValue, {}));
  }

  /**
   * Switches every listed attachment to its new slot at one instant: the new
   * slots go into the inactive generation, then the generation word flips.
   * Every packet reads the generation once, so none sees a mix. An
   * attachment's flags (ATTACH_LEARN) and the global flags (audit) are kept.
   */
  switchAttachments(changes: readonly { attachId: number; slot: number; dir: number }[]): void {
    const maps = this.#dp.maps;
    const { gen, flags } = this.#state();
    const next = 1 - gen;
    const attachFlags = new Map<number, number>();
    for (const c of changes) {
      const current = maps.attach.lookup(u32Key(c.attachId));
      const old = current ? decode(AttachValue, current) : null;
      const slots = old ? (old.slot as number[]) : [0, 0];
      const f = old ? Number(old.flags) : 0;
      attachFlags.set(c.attachId, f);
      slots[next] = c.slot;
      maps.attach.update(
        u32Key(c.attachId),
        encode(AttachValue, { slot: slots, dir: c.dir, flags: f }),
      );
    }
    maps.state.update(u32Key(0), encode(StateValue, { gen: next, flags }));
    for (const c of changes) {
      maps.attach.update(
        u32Key(c.attachId),
        encode(AttachValue, {
          slot: [c.slot, c.slot],
          dir: c.dir,
          flags: attachFlags.get(c.attachId) ?? 0,
        }),
      );
    }
  }

  /** The counters of `installed`: every rule and the default, in both directions. */
  counts(installed: InstalledPolicy): RuleCount[] {
    const n = installed.compiled.policy.rules.length;
    const all = this.readCounters(installed.counterBase, installed.compiled.counterCount);
    const out: RuleCount[] = [];
    for (let rule = -1; rule < n; rule++) {
      for (const dir of [0, 1]) {
        const [packets, bytes] = all[counterOffset(n, rule < 0 ? null : rule, dir)];
        out.push({ rule, dir, packets, bytes });
      }
    }
    return out;
  }

  /** Packets and bytes at counter `idx`, summed over CPUs. */
  readCounter(idx: number): [bigint, bigint] {
    return this.readCounters(idx, 1)[0];
  }

  /** Packets and bytes of counters `base`..`base + count - 1`, summed over CPUs: a lookup per block. */
  readCounters(base: number, count: number): [bigint, bigint][] {
    return readCounterRange(this.#dp.maps.counters, base, count);
  }

  /** Writes a whole fast table (every L4 key: entries not in the policy are FAST_NONE). */
  #writeFastTable(t: FastTable): void {
    const keys = new Uint32Array(FAST_TABLE_SIZE);
    const base = (t.table - 1) * FAST_TABLE_SIZE;
    for (let i = 0; i < FAST_TABLE_SIZE; i++) keys[i] = base + i;
    const values = new Uint8Array(t.values.buffer, t.values.byteOffset, t.values.byteLength);
    this.#dp.maps.fast_l4.updateBatch(new Uint8Array(keys.buffer), values, FAST_TABLE_SIZE);
  }

  /** Zeroes the blocks of the counter range starting at `base` (a block boundary). */
  #zeroCounters(base: number, count: number): void {
    const first = base / COUNTERS_PER_BLOCK;
    const n = blocksFor(count);
    const keys = new Uint8Array(n * 4);
    const view = new DataView(keys.buffer);
    for (let i = 0; i < n; i++) view.setUint32(i * 4, first + i, true);
    const values = new Uint8Array(n * CounterBlock.size);
    this.#dp.maps.counters.updateBatch(keys, values, n);
  }
}

/** A slot an earlier agent left in use: the parts of its state record that hold resources. */
export interface AdoptedSlot {
  readonly slot: number;
  readonly counterBase: number;
  readonly counterCount: number;
  readonly fastTables: readonly number[];
}

/** Where the slot is in the keys of each map keyed by slot (lib/abi/layout.ts). */
const SLOT_KEYS: readonly [MapName, { offset: number; bigEndian: boolean }][] = [
  ["addr4_hash", { offset: 0, bigEndian: false }],
  ["addr6_hash", { offset: 0, bigEndian: false }],
  ["rule_hash", { offset: 0, bigEndian: false }],
  ["lpm_v4", { offset: 4, bigEndian: true }],
  ["lpm_v6", { offset: 4, bigEndian: true }],
  ["port_lpm", { offset: 4, bigEndian: true }],
];

/**
 * Packets and bytes of counters `base`..`base + count - 1` of a `counters`
 * map (its own or a pinned one), summed over CPUs: a lookup per block.
 */
export function readCounterRange(
  counters: BpfMap,
  base: number,
  count: number,
): [bigint, bigint][] {
  const out: [bigint, bigint][] = [];
  let block = -1;
  let sums: bigint[] = [];
  for (let idx = base; idx < base + count; idx++) {
    if (Math.floor(idx / COUNTERS_PER_BLOCK) !== block) {
      block = Math.floor(idx / COUNTERS_PER_BLOCK);
      sums = sumPerCpu(counters.lookupPerCpu(u32Key(block)) ?? []);
    }
    const lane = (idx % COUNTERS_PER_BLOCK) * 2;
    out.push([sums[lane] ?? 0n, sums[lane + 1] ?? 0n]);
  }
  return out;
}

/** How many counter blocks `count` counters take. */
function blocksFor(count: number): number {
  return Math.ceil(count / COUNTERS_PER_BLOCK);
}

/** The keys of `m` only (what deletion needs). */
function keyOnly(m: MapEntries): MapEntries {
  return { keys: m.keys, values: new Uint8Array(), count: m.count };
}

function write(map: BpfMap, e: { keys: Uint8Array; values: Uint8Array; count: number }): void {
  try {
    map.updateBatch(e.keys, e.values, e.count);
  } catch (err) {
    if (err instanceof BpfError && (err.errno === E2BIG || err.errno === ENOSPC)) {
      throw new MapFullError(map.name, map.maxEntries, e.count);
    }
    throw err;
  }
}

/**
 * A map of the data plane is full. The compiler keeps every policy file
 * within its share of each map (docs/POLICY.md, "Limits"), so this only
 * happens past that contract (e.g. policies installed by a test directly).
 */
export class MapFullError extends Error {
  constructor(readonly map: string, readonly capacity: number, readonly wanted: number) {
    super(
      `the ${map} map is full: it holds ${capacity.toLocaleString("en-US")} entries, and ` +
        `${wanted.toLocaleString("en-US")} more did not fit beside those in use`,
    );
    this.name = "MapFullError";
  }
}
