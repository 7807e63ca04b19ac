/**
 * The FFI layer (lib/ffi) and the loaded datapath (lib/datapath/object.ts)
 * against the running kernel, with the real bpf/tinyfw.bpf.o (built by
 * `deno task build:bpf`). Needs root, clang (a throwaway object is compiled
 * for the BTF and verifier cases), iproute2 and nsenter. XDP attachment and
 * traffic happen only inside namespaces the tests create (prefix `tfwt`).
 */

import assert from "node:assert/strict";
import {
  AttachValue,
  ClassValue,
  CounterBlock,
  CpuStateValue,
  decode,
  DIR_INGRESS,
  encode,
  EVENTS_RINGBUF_SIZE,
  FlowKey,
  FlowValue,
  type Layout,
  LAYOUTS,
  LpmV4Key,
  LpmV6Key,
  MAX_FLOWS,
  PolicyValue,
  PortLpmKey,
  RuleKey,
  STAT_COUNT,
  STAT_MALFORMED,
  STAT_NONIP,
  STAT_UNCONFIGURED,
  StateValue,
  VerdictValue,
} from "../../lib/abi/layout.ts";
import {
  BpfMap,
  Datapath,
  MAP_NAMES,
  possibleCpus,
  progInfo,
  programAttachId,
  sumPerCpu,
  testRun,
  u32Key,
  xdpAttach,
  xdpDetach,
  xdpQuery,
} from "../../lib/datapath/object.ts";
import {
  BpffsNotMountedError,
  ensurePinDir,
  isBpffs,
  pin,
  pinnedProgramId,
  removePinDir,
} from "../../lib/datapath/bpffs.ts";
import {
  BatchError,
  BpfError,
  BpfObject,
  mapLookupElem as bpfLookup,
  setLibbpfLogger,
} from "../../lib/ffi/libbpf/mod.ts";
import * as libc from "../../lib/ffi/libc.ts";
import { SysError } from "../../lib/ffi/errors.ts";
import { createVethPair, run, uniqueName, withNetns } from "../helpers/netns.ts";

const XDP_DROP = 1;
const XDP_PASS = 2;
const BPF_PROG_TYPE_XDP = 6;
/** Small capacities for the maps whose full size makes loading slow. */
const SMALL = { counters: 4096 } as const;

// ---------------------------------------------------------------------------
// Helpers.

/** An Ethernet + IPv4 + UDP frame. */
function udp4Frame(src: number[], dst: number[], sport: number, dport: number): Uint8Array {
  const frame = new Uint8Array(14 + 20 + 8 + 18);
  const v = new DataView(frame.buffer);
  frame.set([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1], 0);
  v.setUint16(12, 0x0800);
  frame[14] = 0x45;
  v.setUint16(16, 20 + 8 + 18);
  frame[22] = 64;
  frame[23] = 17;
  frame.set(src, 26);
  frame.set(dst, 30);
  v.setUint16(34, sport);
  v.setUint16(36, dport);
  v.setUint16(38, 8 + 18);
  return frame;
}

/** An ARP frame (non-IP). */
function arpFrame(): Uint8Array {
  const frame = new Uint8Array(42);
  frame.fill(0xff, 0, 6);
  new DataView(frame.buffer).setUint16(12, 0x0806);
  return frame;
}

function statsTotal(dp: Datapath, stat: number): bigint {
  return sumPerCpu(dp.maps.stats.lookupPerCpu(u32Key(stat))!)[0];
}

/** Makes attachment `attachId` (ingress) use policy slot `slot`, whose default is deny. */
function configureDeny(dp: Datapath, attachId: number, slot: number, counter: number): void {
  dp.maps.policies.update(
    u32Key(slot),
    encode(PolicyValue, { default_action: 1, default_counter: [counter, counter + 1] }),
  );
  dp.maps.attach.update(u32Key(attachId), encode(AttachValue, { slot: [slot, slot], dir: 0 }));
  dp.maps.state.update(u32Key(0), encode(StateValue, { gen: 0 }));
}

/** A sockaddr_in. */
function sockaddrIn(addr: number[], port: number): Uint8Array<ArrayBuffer> {
  const sa = new Uint8Array(16);
  const v = new DataView(sa.buffer);
  v.setUint16(0, libc.AF_INET, true);
  v.setUint16(2, port);
  sa.set(addr, 4);
  return sa;
}

const BPF_INCLUDE = new URL("../../bpf", import.meta.url).pathname;

/**
 * A throwaway object with the datapath's map names, two .rodata variables
 * (attach_id second, so at offset 4), a 12-byte per-CPU `counters` value, and
 * a program that drops when attach_id is 3. With `broken`, the program reads
 * past the packet without a bounds check (the verifier refuses it).
 */
const THROWAWAY_C = `
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "tinyfw.h"

struct odd { __u32 a, b, c; };
const volatile __u32 before = 7;
const volatile __u32 attach_id = 0;

#define ARRAY(name, max, v) struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, max); \\
  __type(key, __u32); __type(value, v); } name SEC(".maps")
#define LPM(name, k, v) struct { __uint(type, BPF_MAP_TYPE_LPM_TRIE); __uint(max_entries, 64); \\
  __uint(map_flags, BPF_F_NO_PREALLOC); __type(key, k); __type(value, v); } name SEC(".maps")
ARRAY(state, 1, struct tfw_state);
ARRAY(attach, 16, struct tfw_attach);
ARRAY(policies, 16, struct tfw_policy);
LPM(lpm_v4, struct tfw_lpm_v4_key, struct tfw_class);
LPM(lpm_v6, struct tfw_lpm_v6_key, struct tfw_class);
LPM(port_lpm, struct tfw_port_key, struct tfw_verdict);
#define HASH(name, k, v) struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 64); \\
  __type(key, k); __type(value, v); } name SEC(".maps")
HASH(addr4_hash, struct tfw_addr4_key, struct tfw_class);
HASH(addr6_hash, struct tfw_addr6_key, struct tfw_class);
ARRAY(fast_l4, 16, __u32);
HASH(rule_hash, struct tfw_rule_key, struct tfw_verdict);
struct { __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, 16);
  __type(key, __u32); __type(value, struct odd); } counters SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, STAT_COUNT);
  __type(key, __u32); __type(value, __u64); } stats SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_LRU_HASH); __uint(max_entries, 64);
  __type(key, struct tfw_flow_key); __type(value, struct tfw_flow); } flows SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 4096); } events SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, 1);
  __type(key, __u32); __type(value, struct tfw_cpu_state); } cpu_state SEC(".maps");

SEC("xdp")
int tinyfw_xdp(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct odd *o = bpf_map_lookup_elem(&counters, &zero);
#ifdef BROKEN
	unsigned char *p = (void *)(long)ctx->data;
	if (p[100] == 1)
		return XDP_ABORTED;
#endif
	if (o) {
		o->a += 1;
		o->c += before;
	}
	return attach_id == 3 ? XDP_DROP : XDP_PASS;
}

SEC("tc")
int tinyfw_tc_learn(struct __sk_buff *skb)
{
	return -1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
`;

async function buildThrowaway(broken: boolean): Promise<Uint8Array> {
  const dir = await Deno.makeTempDir({ prefix: "tfwt-obj-" });
  try {
    await Deno.writeTextFile(`${dir}/x.bpf.c`, THROWAWAY_C);
    await run([
      "clang",
      "-O2",
      "-g",
      "-target",
      "bpf",
      ...(broken ? ["-DBROKEN"] : []),
      "-I",
      BPF_INCLUDE,
      "-I",
      `/usr/include/${Deno.build.arch}-linux-gnu`,
      "-c",
      `${dir}/x.bpf.c`,
      "-o",
      `${dir}/x.bpf.o`,
    ]);
    return await Deno.readFile(`${dir}/x.bpf.o`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function withDatapath<T>(fn: (dp: Datapath) => T, opts = {}): T {
  const dp = Datapath.load({ maxEntries: SMALL, ...opts });
  try {
    return fn(dp);
  } finally {
    dp.close();
  }
}

// ---------------------------------------------------------------------------
// libc.

Deno.test("libc: failures throw SysError with op, errno, code and strerror", () => {
  assert.throws(() => libc.open("/nonexistent/tfwt"), (e: unknown) => {
    assert.ok(e instanceof SysError);
    assert.equal(e.errno, 2);
    assert.equal(e.code, "ENOENT");
    assert.equal(e.op, "open /nonexistent/tfwt");
    assert.equal(e.message, "open /nonexistent/tfwt: No such file or directory (ENOENT)");
    return true;
  });
  assert.throws(() => libc.ifNameToIndex("tfwt-none"), (e: unknown) => {
    return e instanceof SysError && e.code === "ENODEV";
  });
  assert.throws(() => libc.close(-1), (e: unknown) => e instanceof SysError && e.code === "EBADF");
  assert.equal(libc.ifIndexToName(libc.ifNameToIndex("lo")), "lo");
  assert.equal(libc.getpid(), Deno.pid);
});

Deno.test("libc: UDP sockets inside a namespace; recvAsync waits, times out and aborts", async () => {
  await withNetns(1, async (ns) => {
    const fd = ns.enter(() => libc.socket(libc.AF_INET, libc.SOCK_DGRAM | libc.SOCK_CLOEXEC, 0));
    try {
      libc.bind(fd, sockaddrIn([127, 0, 0, 1], 0));
      const name = libc.getsockname(fd);
      const port = new DataView(name.buffer).getUint16(2);
      assert.ok(port > 0);
      assert.equal(libc.getsockoptInt(fd, libc.SOL_SOCKET, 3 /* SO_TYPE */), libc.SOCK_DGRAM);

      const buf = new Uint8Array(64);
      assert.equal(await libc.recvAsync(fd, buf, { timeoutMs: 20 }), null, "times out");
      assert.throws(() => libc.recv(fd, buf, libc.MSG_DONTWAIT), (e: unknown) => {
        return e instanceof SysError && e.code === "EAGAIN";
      });

      const pending = libc.recvAsync(fd, buf, { timeoutMs: 5000 });
      // Sent from the namespace's loopback (a socket made in our own namespace could not reach it).
      const tx = ns.enter(() => libc.socket(libc.AF_INET, libc.SOCK_DGRAM | libc.SOCK_CLOEXEC, 0));
      try {
        const sent = libc.sendto(tx, new TextEncoder().encode("hello"), 0, name.slice());
        assert.equal(sent, 5);
        assert.equal(await pending, 5);
        assert.equal(new TextDecoder().decode(buf.subarray(0, 5)), "hello");
        libc.sendto(tx, new TextEncoder().encode("again"), 0, name.slice());
        await libc.waitReadable(fd);
        const { n, addr } = libc.recvfrom(fd, buf);
        assert.equal(n, 5);
        assert.deepEqual([...addr.subarray(4, 8)], [127, 0, 0, 1]);
      } finally {
        libc.close(tx);
      }

      const ac = new AbortController();
      const waiting = libc.recvAsync(fd, buf, { signal: ac.signal });
      setTimeout(() => ac.abort(new Error("stop")), 10);
      await assert.rejects(waiting, /stop/);
    } finally {
      libc.close(fd);
    }
  });
});

Deno.test("libc: inNetns moves only the JS thread, and back", async () => {
  const home = Deno.statSync("/proc/thread-self/ns/net").ino;
  await withNetns(1, (ns) => {
    const inside = ns.enter(() => Deno.statSync("/proc/thread-self/ns/net").ino);
    assert.equal(inside, Deno.statSync(ns.path).ino);
    assert.equal(Deno.statSync("/proc/thread-self/ns/net").ino, home);
    assert.throws(() => ns.enter(() => libc.ifNameToIndex("eth0-tfwt")), SysError);
    assert.equal(Deno.statSync("/proc/thread-self/ns/net").ino, home, "restored after a throw");
  });
});

// ---------------------------------------------------------------------------
// Loading and maps.

Deno.test("load: every map exists with the sizes layout.ts defines", () => {
  const byName = (cName: string): Layout => LAYOUTS.find((l) => l.cName === cName)!;
  const want: Record<string, [number, number]> = {
    state: [4, byName("tfw_state").size],
    attach: [4, byName("tfw_attach").size],
    policies: [4, byName("tfw_policy").size],
    lpm_v4: [LpmV4Key.size, ClassValue.size],
    lpm_v6: [LpmV6Key.size, ClassValue.size],
    addr4_hash: [byName("tfw_addr4_key").size, ClassValue.size],
    addr6_hash: [byName("tfw_addr6_key").size, ClassValue.size],
    fast_l4: [4, 4],
    rule_hash: [RuleKey.size, VerdictValue.size],
    port_lpm: [PortLpmKey.size, VerdictValue.size],
    counters: [4, CounterBlock.size],
    stats: [4, 8],
    flows: [FlowKey.size, FlowValue.size],
    events: [0, 0],
    cpu_state: [4, CpuStateValue.size],
  };
  // Full-size maps, as the agent loads them.
  const dp = Datapath.load();
  try {
    for (const name of MAP_NAMES) {
      const m = dp.map(name);
      assert.equal(m.name, name);
      assert.deepEqual([m.keySize, m.valueSize], want[name], name);
    }
    assert.equal(dp.maps.stats.maxEntries, STAT_COUNT);
    assert.equal(dp.maps.counters.perCpu, true);
    assert.equal(dp.maps.stats.perCpu, true);
    assert.equal(dp.maps.rule_hash.perCpu, false);
    assert.equal(dp.maps.flows.maxEntries, MAX_FLOWS);
    assert.equal(dp.maps.events.maxEntries, EVENTS_RINGBUF_SIZE);
  } finally {
    dp.close();
  }
  withDatapath((dp) => assert.equal(dp.maps.counters.maxEntries, SMALL.counters));
});

Deno.test("maps: update, lookup, delete and iterate on arrays, hashes and LPM tries", () => {
  withDatapath((dp) => {
    // Array.
    const st = encode(StateValue, { gen: 1 });
    dp.maps.state.update(u32Key(0), st);
    assert.deepEqual(dp.maps.state.lookup(u32Key(0)), st);
    assert.equal(dp.maps.state.lookup(u32Key(1)), null, "out of range reads as absent");
    assert.equal([...dp.maps.attach.keys()].length, dp.maps.attach.maxEntries);
    assert.throws(() => dp.maps.state.update(u32Key(0), st, "noexist"), (e: unknown) => {
      return e instanceof BpfError && e.code === "EEXIST";
    });

    // Hash.
    const rh = dp.maps.rule_hash;
    const k1 = encode(RuleKey, { slot: 1, dir: DIR_INGRESS, proto: 6, cls: 0, l4: 80 });
    const k2 = encode(RuleKey, { slot: 1, dir: DIR_INGRESS, proto: 6, cls: 0, l4: 443 });
    rh.update(k1, encode(VerdictValue, { counter: 5, action: 1 }));
    rh.update(k2, encode(VerdictValue, { counter: 6, action: 0 }), "noexist");
    assert.deepEqual(decode(VerdictValue, rh.lookup(k1)!), { counter: 5, action: 1 });
    const keys = [...rh.keys()].map((k) => decode(RuleKey, k).l4 as number).sort((a, b) => a - b);
    assert.deepEqual(keys, [80, 443]);
    assert.equal(rh.delete(k1), true);
    assert.equal(rh.delete(k1), false);
    assert.equal(rh.lookup(k1), null);
    assert.throws(() => rh.update(k1, encode(VerdictValue, {}), "exist"), (e: unknown) => {
      return e instanceof BpfError && e.code === "ENOENT";
    });

    // LPM trie: a lookup returns the longest prefix containing the address.
    const lpm = dp.maps.lpm_v4;
    const key = (len: number, addr: number[]) =>
      encode(LpmV4Key, { prefixlen: 32 + len, slot: 2, dir: 0, addr });
    lpm.update(key(8, [10, 0, 0, 0]), encode(ClassValue, { cls: 1 }));
    lpm.update(key(24, [10, 1, 2, 0]), encode(ClassValue, { cls: 2 }));
    assert.equal(decode(ClassValue, lpm.lookup(key(32, [10, 1, 2, 3]))!).cls, 2);
    assert.equal(decode(ClassValue, lpm.lookup(key(32, [10, 9, 9, 9]))!).cls, 1);
    assert.equal(lpm.lookup(key(32, [11, 0, 0, 1])), null);
    assert.equal([...lpm.keys()].length, 2);
    assert.equal(lpm.delete(key(8, [10, 0, 0, 0])), true);
    assert.equal(lpm.lookup(key(32, [10, 9, 9, 9])), null);

    // Sizes are checked before the kernel reads a byte.
    assert.throws(() => rh.lookup(new Uint8Array(3)), RangeError);
    assert.throws(() => rh.update(k1, new Uint8Array(3)), RangeError);
  });
});

Deno.test("maps: batch update and delete (hash and array batched, LPM trie per element)", () => {
  withDatapath((dp) => {
    const n = 2000;
    const rk = new Uint8Array(n * RuleKey.size);
    const rv = new Uint8Array(n * VerdictValue.size);
    for (let i = 0; i < n; i++) {
      rk.set(encode(RuleKey, { slot: 3, proto: 17, l4: i, kind: 0 }), i * RuleKey.size);
      rv.set(encode(VerdictValue, { counter: i, action: i & 1 }), i * VerdictValue.size);
    }
    const rh = dp.maps.rule_hash;
    assert.equal(rh.updateBatch(rk, rv, n), n);
    assert.equal([...rh.keys()].length, n);
    const k77 = rk.slice(77 * RuleKey.size, 78 * RuleKey.size);
    assert.deepEqual(decode(VerdictValue, rh.lookup(k77)!), { counter: 77, action: 1 });
    assert.throws(() => rh.updateBatch(rk, rv, n, "noexist"), (e: unknown) => {
      return e instanceof BatchError && e.code === "EEXIST" && e.done === 0;
    });
    rh.delete(rk.slice(0, RuleKey.size));
    assert.throws(() => rh.updateBatch(rk, rv, n, "noexist"), (e: unknown) => {
      return e instanceof BatchError && e.code === "EEXIST" && e.done === 1;
    });
    rh.delete(k77);
    assert.equal(rh.deleteBatch(rk, n), n - 1, "an absent key is skipped");
    assert.equal([...rh.keys()].length, 0);

    const lk = new Uint8Array(n * LpmV6Key.size);
    const lv = new Uint8Array(n * ClassValue.size);
    for (let i = 0; i < n; i++) {
      const addr = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, i >> 8, i & 0xff];
      lk.set(encode(LpmV6Key, { prefixlen: 32 + 128, slot: 1, addr }), i * LpmV6Key.size);
      lv.set(encode(ClassValue, { cls: i + 1 }), i * ClassValue.size);
    }
    assert.equal(dp.maps.lpm_v6.updateBatch(lk, lv, n), n);
    assert.equal([...dp.maps.lpm_v6.keys()].length, n);
    assert.equal(dp.maps.lpm_v6.deleteBatch(lk, n), n);
    assert.equal([...dp.maps.lpm_v6.keys()].length, 0);

    const pk = new Uint8Array(3 * 4);
    const pv = new Uint8Array(3 * PolicyValue.size);
    for (let i = 0; i < 3; i++) {
      pk.set(u32Key(10 + i), i * 4);
      pv.set(encode(PolicyValue, { default_action: 1, flags: [i, 0] }), i * PolicyValue.size);
    }
    assert.equal(dp.maps.policies.updateBatch(pk, pv, 3), 3);
    assert.deepEqual(
      decode(PolicyValue, dp.maps.policies.lookup(u32Key(12))!).flags,
      new Uint8Array([2, 0]),
    );
    assert.throws(() => rh.updateBatch(rk, rv, n + 1), RangeError);
  });
});

/** Packets and bytes of counter `idx` (lane idx % 8 of block idx / 8), summed over CPUs. */
function counterAt(dp: Datapath, idx: number): [bigint, bigint] {
  const block = sumPerCpu(dp.maps.counters.lookupPerCpu(u32Key(Math.floor(idx / 8)))!);
  return [block[(idx % 8) * 2], block[(idx % 8) * 2 + 1]];
}

Deno.test("maps: per-CPU values, one per possible CPU, summed", () => {
  withDatapath((dp) => {
    const text = Deno.readTextFileSync("/sys/devices/system/cpu/possible").trim();
    const last = Number(text.split(/[-,]/).at(-1));
    if (!text.includes(",")) assert.equal(possibleCpus(), last + 1);
    const c = dp.maps.counters;
    // Counter 1 of block 9: packets at [2], bytes at [3].
    const counts = Array<bigint>(16).fill(0n);
    [counts[2], counts[3]] = [3n, 300n];
    c.update(u32Key(9), encode(CounterBlock, { counts }));
    const per = c.lookupPerCpu(u32Key(9))!;
    assert.equal(per.length, possibleCpus());
    for (const v of per) assert.deepEqual(decode(CounterBlock, v), { counts });
    const n = BigInt(per.length);
    assert.deepEqual(sumPerCpu(per), counts.map((x) => x * n));
    assert.throws(() => c.lookup(u32Key(9)), TypeError);

    const keys = new Uint8Array(8);
    keys.set(u32Key(1), 0);
    keys.set(u32Key(2), 4);
    const values = new Uint8Array(2 * CounterBlock.size);
    values.set(encode(CounterBlock, { counts: [1n] }), 0);
    values.set(encode(CounterBlock, { counts: [2n] }), CounterBlock.size);
    assert.equal(c.updateBatch(keys, values, 2), 2);
    assert.deepEqual(sumPerCpu(c.lookupPerCpu(u32Key(2))!).slice(0, 2), [2n * n, 0n]);
  });
});

// ---------------------------------------------------------------------------
// Errors.

Deno.test("errors: BpfError carries errno, libbpf's message and log", async () => {
  assert.throws(() => new BpfMap(987654), (e: unknown) => {
    // Kernels since 6.x answer EBADFD here, older ones EBADF.
    return e instanceof BpfError && e.op === "bpf_obj_get_info_by_fd (map)" && e.errno > 0;
  });
  assert.throws(
    () => bpfLookup(987654, new Uint8Array(4), new Uint8Array(8)),
    (e: unknown) => {
      assert.ok(e instanceof BpfError && e instanceof SysError);
      assert.equal(e.errno, 9);
      assert.equal(e.code, "EBADF");
      assert.equal(e.message, "bpf_map_lookup_elem: Bad file descriptor (EBADF)");
      return true;
    },
  );
  withDatapath((dp) => {
    assert.throws(() => dp.maps.attach.delete(u32Key(0)), (e: unknown) => {
      return e instanceof BpfError && e.code === "EINVAL" && e.op === "bpf_map_delete_elem";
    });
  });

  // Not an ELF file: libbpf's own error number, explained by libbpf_strerror.
  const lines: string[] = [];
  setLibbpfLogger((level, line) => lines.push(`${level}: ${line}`));
  try {
    assert.throws(() => BpfObject.openMem(new Uint8Array(256).fill(0x41)), (e: unknown) => {
      assert.ok(e instanceof BpfError);
      assert.equal(e.op, "bpf_object__open_mem");
      assert.ok(e.errno > 0);
      assert.ok(e.log.length > 0, "libbpf said why");
      return true;
    });
    assert.ok(lines.some((l) => l.startsWith("warn: libbpf: ")), lines.join("\n"));
  } finally {
    setLibbpfLogger(null);
  }

  // A program the verifier refuses: the datapath loads (maps only), the instance does not.
  const broken = await buildThrowaway(true);
  const dp = Datapath.load({ elf: broken });
  try {
    assert.throws(() => dp.instance(1), (e: unknown) => {
      assert.ok(e instanceof BpfError);
      assert.equal(e.op, "bpf_object__load");
      assert.equal(e.code, "EACCES");
      assert.match(e.verifierLog, /invalid access to packet/);
      return true;
    });
  } finally {
    dp.close();
  }
  // The same with a kernel log buffer of our own (libbpf then leaves the log to us).
  const obj = BpfObject.openMem(broken, { kernelLogLevel: 1 });
  try {
    assert.throws(() => obj.load(), (e: unknown) => {
      return e instanceof BpfError && /invalid access to packet/.test(e.verifierLog);
    });
    assert.match(obj.kernelLog(), /invalid access to packet/);
  } finally {
    obj.close();
  }
});

Deno.test("load: kernel log statistics of the real programs", () => {
  // The log buffer keeps the last program load's: one program per load.
  for (const name of ["tinyfw_xdp", "tinyfw_tc_learn"]) {
    const obj = BpfObject.openMem(
      Deno.readFileSync(new URL("../../bpf/tinyfw.bpf.o", import.meta.url)),
      {
        kernelLogLevel: 4,
      },
    );
    try {
      assert.equal(obj.findProgram(name)?.name, name);
      for (const p of obj.programs()) p.setAutoload(p.name === name);
      obj.load();
      const log = obj.kernelLog();
      assert.match(log, /processed \d+ insns/);
      console.log(`${name}: ${log.trim().split("\n").join("; ")}`);
    } finally {
      obj.close();
    }
  }
});

// ---------------------------------------------------------------------------
// Program instances and test runs.

Deno.test("instances: attach_id selects the attach entry; test runs count in the maps", () => {
  withDatapath((dp) => {
    configureDeny(dp, 5, 1, 10);
    const configured = dp.instance(5);
    const other = dp.instance(6);
    try {
      const info = progInfo({ id: configured.id });
      assert.equal(info.name, "tinyfw_xdp");
      assert.equal(info.type, BPF_PROG_TYPE_XDP);
      assert.match(info.tag, /^[0-9a-f]{16}$/);
      assert.deepEqual(progInfo({ fd: configured.fd }), info);
      assert.equal(programAttachId({ id: configured.id }), 5);
      assert.equal(programAttachId({ fd: other.fd }), 6);

      const pkt = udp4Frame([10, 0, 0, 1], [10, 0, 0, 2], 1234, 53);
      const r = testRun(configured.fd, pkt, 10);
      assert.equal(r.retval, XDP_DROP);
      assert.ok(r.durationNs >= 0);
      assert.deepEqual(r.dataOut, pkt);
      assert.deepEqual(counterAt(dp, 10), [10n, BigInt(10 * pkt.length)]);

      const before = statsTotal(dp, STAT_UNCONFIGURED);
      assert.equal(testRun(other.fd, pkt, 7).retval, XDP_PASS);
      assert.equal(statsTotal(dp, STAT_UNCONFIGURED) - before, 7n);

      const nonip = statsTotal(dp, STAT_NONIP);
      assert.equal(testRun(configured.fd, arpFrame()).retval, XDP_PASS);
      assert.equal(statsTotal(dp, STAT_NONIP) - nonip, 1n);
      const malformed = statsTotal(dp, STAT_MALFORMED);
      assert.equal(
        testRun(configured.fd, udp4Frame([1, 1, 1, 1], [2, 2, 2, 2], 1, 2).subarray(0, 30)).retval,
        XDP_DROP,
      );
      assert.equal(statsTotal(dp, STAT_MALFORMED) - malformed, 1n);

      assert.throws(() => testRun(configured.fd, new Uint8Array(4)), (e: unknown) => {
        return e instanceof BpfError && e.code === "EINVAL";
      });
    } finally {
      configured.close();
      other.close();
    }
    assert.throws(() => dp.instance(dp.maps.attach.maxEntries), RangeError);
    assert.throws(() => dp.instance(-1), RangeError);
  });
});

Deno.test("instances: attach_id is found through BTF beside other .rodata variables", async () => {
  const elf = await buildThrowaway(false);
  const obj = BpfObject.openMem(elf);
  try {
    assert.deepEqual(obj.sectionVars(".rodata"), [
      { name: "before", offset: 0, size: 4 },
      { name: "attach_id", offset: 4, size: 4 },
    ]);
  } finally {
    obj.close();
  }
  const dp = Datapath.load({ elf });
  try {
    const drop = dp.instance(3);
    const pass = dp.instance(4);
    try {
      const pkt = udp4Frame([10, 0, 0, 1], [10, 0, 0, 2], 1, 2);
      assert.equal(testRun(drop.fd, pkt).retval, XDP_DROP);
      assert.equal(testRun(pass.fd, pkt, 4).retval, XDP_PASS);
      assert.equal(programAttachId({ id: drop.id }, { elf }), 3);
      assert.equal(programAttachId({ id: pass.id }, { elf }), 4);
    } finally {
      drop.close();
      pass.close();
    }
    // 12-byte per-CPU values sit 16 bytes apart in the kernel's buffer; both runs counted.
    const per = dp.maps.counters.lookupPerCpu(u32Key(0))!;
    assert.equal(dp.maps.counters.perCpuStride, 16);
    assert.ok(per.every((v) => v.length === 12));
    const sum = (field: number) =>
      per.reduce((s, v) => s + new DataView(v.buffer).getUint32(field * 4, true), 0);
    assert.equal(sum(0), 5, "o->a counts the runs");
    assert.equal(sum(2), 5 * 7, "o->c adds `before`, read from .rodata offset 0");
  } finally {
    dp.close();
  }
});

// ---------------------------------------------------------------------------
// XDP attachment, in namespaces the test creates.

Deno.test("xdp: attach, query, replace and detach on a veth in a test namespace", async () => {
  const dp = Datapath.load({ maxEntries: SMALL });
  const a = dp.instance(1);
  const b = dp.instance(2);
  try {
    await withNetns(1, async (ns) => {
      const veth = await createVethPair({ hostNetns: ns });
      ns.enter(() => {
        const ifindex = veth.hostIndex;
        assert.deepEqual(xdpQuery(ifindex), {
          progId: 0,
          mode: "none",
          driverId: 0,
          skbId: 0,
          hwId: 0,
        });
        for (const mode of ["native", "generic"] as const) {
          xdpAttach(ifindex, a.fd, { mode });
          const q = xdpQuery(ifindex);
          assert.equal(q.progId, a.id);
          assert.equal(q.mode, mode);
          assert.equal(mode === "native" ? q.driverId : q.skbId, a.id);

          // Another program is not put over it without replaceFd...
          assert.throws(() => xdpAttach(ifindex, b.fd, { mode }), (e: unknown) => {
            assert.ok(e instanceof BpfError);
            assert.equal(e.code, "EBUSY");
            assert.ok(e.log.some((l) => /Kernel error message/.test(l)), e.log.join("\n"));
            return true;
          });
          // ...replaces it atomically with it...
          xdpAttach(ifindex, b.fd, { mode, replaceFd: a.fd });
          assert.equal(xdpQuery(ifindex).progId, b.id);
          // ...and only if the expected program is there.
          assert.throws(
            () => xdpAttach(ifindex, a.fd, { mode, replaceFd: a.fd }),
            (e: unknown) => e instanceof BpfError && e.code === "EEXIST",
          );
          assert.throws(
            () => xdpDetach(ifindex, mode, { expectFd: a.fd }),
            (e: unknown) => e instanceof BpfError && e.code === "EEXIST",
          );
          xdpDetach(ifindex, mode, { expectFd: b.fd });
          assert.equal(xdpQuery(ifindex).mode, "none");
        }
      });
      await veth.delete();
    });
  } finally {
    a.close();
    b.close();
    dp.close();
  }
});

Deno.test("xdp: live traffic through a veth between two test namespaces is filtered and counted", async () => {
  const dp = Datapath.load({ maxEntries: SMALL });
  const prog = dp.instance(9);
  try {
    await withNetns(2, async (left, right) => {
      // No IPv6 on the pair: its own traffic (MLD reports...) would be counted too.
      for (const ns of [left, right]) {
        await ns.exec(["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
      }
      const veth = await createVethPair({
        hostNetns: left,
        peerNetns: right,
        hostAddrs: ["10.251.0.1/24"],
        peerAddrs: ["10.251.0.2/24"],
      });
      for (const mode of ["generic", "native"] as const) {
        // Receiver on the right; the program on the right end sees what enters it.
        const rx = right.enter(() => {
          const fd = libc.socket(libc.AF_INET, libc.SOCK_DGRAM | libc.SOCK_CLOEXEC, 0);
          libc.bind(fd, sockaddrIn([10, 251, 0, 2], 0));
          xdpAttach(veth.peerIndex, prog.fd, { mode });
          return fd;
        });
        const tx = left.enter(() =>
          libc.socket(libc.AF_INET, libc.SOCK_DGRAM | libc.SOCK_CLOEXEC, 0)
        );
        try {
          const to = libc.getsockname(rx);
          const send = () => libc.sendto(tx, new TextEncoder().encode("tinyfw"), 0, to.slice());
          const buf = new Uint8Array(64);

          // Unconfigured: passes.
          dp.maps.attach.update(u32Key(9), encode(AttachValue, { slot: [0, 0], dir: 0 }));
          send();
          assert.equal(await libc.recvAsync(rx, buf, { timeoutMs: 3000 }), 6, `${mode}: passes`);

          // Default deny: dropped, and counted on the policy's default counter.
          configureDeny(dp, 9, 2, 20);
          const counted = () => counterAt(dp, 20)[0];
          const before = counted();
          send();
          send();
          assert.equal(await libc.recvAsync(rx, buf, { timeoutMs: 300 }), null, `${mode}: dropped`);
          assert.equal(counted() - before, 2n);
        } finally {
          libc.close(tx);
          libc.close(rx);
          right.enter(() => xdpDetach(veth.peerIndex, mode, { expectFd: prog.fd }));
        }
      }
    });
  } finally {
    prog.close();
    dp.close();
  }
});

// ---------------------------------------------------------------------------
// Pins.

Deno.test("pins: maps pinned under a bpffs directory are reused by the next load", () => {
  const dir = `/sys/fs/bpf/${uniqueName()}`;
  assert.ok(isBpffs("/sys/fs/bpf"));
  assert.equal(isBpffs("/proc"), false);
  assert.throws(() => ensurePinDir("/tmp/tfwt-not-bpffs/x"), BpffsNotMountedError);
  try {
    ensurePinDir(dir);
    const first = Datapath.load({ maxEntries: SMALL, pinDir: dir });
    try {
      first.maps.state.update(u32Key(0), encode(StateValue, { gen: 1 }));
      const prog = first.instance(3);
      try {
        const pinned = `${dir}/prog3`;
        pin(prog.fd, pinned);
        assert.equal(pinnedProgramId(pinned), prog.id);
        assert.equal(pinnedProgramId(`${dir}/none`), null);
      } finally {
        prog.close();
      }
    } finally {
      first.close();
    }
    for (const name of MAP_NAMES) assert.ok(Deno.statSync(`${dir}/${name}`).isFile, name);

    const again = Datapath.load({ maxEntries: SMALL, pinDir: dir });
    try {
      assert.equal(decode(StateValue, again.maps.state.lookup(u32Key(0))!).gen, 1);
    } finally {
      again.close();
    }
    const byPin = BpfMap.fromPin(`${dir}/state`);
    try {
      assert.equal(byPin.name, "state");
      assert.equal(decode(StateValue, byPin.lookup(u32Key(0))!).gen, 1);
    } finally {
      byPin.close();
    }

    // A pinned map of another shape is refused, with libbpf's reason in the log.
    assert.throws(
      () => Datapath.load({ maxEntries: { counters: 8 }, pinDir: dir }),
      (e: unknown) => e instanceof BpfError && e.log.some((l) => /counters/.test(l)),
    );
  } finally {
    assert.equal(removePinDir(dir), true);
    assert.equal(removePinDir(dir), false);
  }
});
