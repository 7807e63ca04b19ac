/**
 * Reads the state of an attached tinyfw program from the kernel, by program
 * id, the way an outside observer would: its maps by id, its attach entry, the
 * policy slot it reads, and that policy's counters.
 */
import { mapGetFdById } from "../../lib/ffi/libbpf/mod.ts";
import { BpfMap, progInfo, programAttachId, sumPerCpu, u32Key } from "../../lib/datapath/object.ts";
import {
  AttachValue,
  counterOffset,
  COUNTERS_PER_BLOCK,
  decode,
  PolicyValue,
  StateValue,
} from "../../lib/abi/layout.ts";

/** Opens the maps of program `progId` by name (without the object prefix). */
function mapsOf(progId: number): Map<string, BpfMap> {
  const maps = new Map<string, BpfMap>();
  for (const id of progInfo({ id: progId }).mapIds) {
    const m = new BpfMap(mapGetFdById(id), true);
    maps.set(m.name, m);
  }
  return maps;
}

/**
 * Packets counted for rule `rule` (or -1: the default) in direction `dir` of
 * the policy the attached program `progId` enforces, whose policy has `ruleCount` rules.
 */
export function attachedRuleCount(
  progId: number,
  ruleCount: number,
  rule: number,
  dir = 0,
): bigint {
  const maps = mapsOf(progId);
  try {
    const get = (name: string) => {
      const m = maps.get(name);
      if (!m) throw new Error(`program ${progId} has no map ${name}`);
      return m;
    };
    const attachId = programAttachId({ id: progId });
    if (attachId === null) throw new Error(`program ${progId} is not a tinyfw program`);
    const gen = Number(decode(StateValue, get("state").lookup(u32Key(0))!).gen);
    const slots = decode(AttachValue, get("attach").lookup(u32Key(attachId))!).slot as number[];
    const policy = decode(PolicyValue, get("policies").lookup(u32Key(slots[gen]))!);
    const defaultCounter = (policy.default_counter as number[])[dir];
    const base = defaultCounter - counterOffset(ruleCount, null, dir);
    const idx = base + counterOffset(ruleCount, rule < 0 ? null : rule, dir);
    const block = sumPerCpu(
      get("counters").lookupPerCpu(u32Key(Math.floor(idx / COUNTERS_PER_BLOCK))) ?? [],
    );
    return block[(idx % COUNTERS_PER_BLOCK) * 2] ?? 0n;
  } finally {
    for (const m of maps.values()) m.close();
  }
}

/** Whether the kernel still has program `id` (a detached program with no holder is freed). */
export function programExists(id: number): boolean {
  try {
    progInfo({ id });
    return true;
  } catch {
    return false;
  }
}
