import assert from "node:assert/strict";
import { encodePolicyEntries, encodePolicyKeys, LayoutWriter } from "../../lib/datapath/entries.ts";
import {
  ACTION_ALLOW,
  ACTION_DENY,
  Addr4Key,
  ADDR_KEY_HEAD_BITS,
  ADDR_LEN_END,
  CLASS_INLINE_MAX,
  ClassValue,
  counterAt,
  counterOffset,
  decode,
  encode,
  FAST_TABLE_SIZE,
  KIND_ANY,
  KIND_EXACT,
  LAYOUTS,
  LpmV4Key,
  LpmV6Key,
  MAX_COUNTERS,
  MAX_SLOTS,
  PF_ADDR4_HASH,
  PF_CIDR4,
  PF_CIDR6,
  PF_LPM_PORTS,
  policyCounterCount,
  PolicyValue,
  PORT_KEY_HEAD_BITS,
  PortLpmKey,
  PROTO_INDEX,
  PROTO_TCP,
  PROTO_UDP,
  RuleKey,
  VerdictValue,
} from "../../lib/abi/layout.ts";
import { compilePolicy } from "../../lib/policy/compile/compile.ts";
import { makePolicy, Rng } from "../helpers/gen.ts";

const policy = makePolicy(
  "deny",
  { protocol: "tcp", ports: [22], cidrs: ["10.0.0.0/8", "fd00::/8"], direction: "ingress" },
  { protocol: "udp", ports: [[53, 54]], action: "deny", direction: "both" },
  { protocol: "icmpv6", icmp: { type: 135 }, direction: "egress" },
);

function records(bytes: Uint8Array, size: number): Uint8Array[] {
  return Array.from(
    { length: bytes.length / size },
    (_, i) => bytes.subarray(i * size, (i + 1) * size),
  );
}

/** The general structures only: LPM tries for addresses, every decision in rule_hash. */
const PLAIN = { addrHash: false, inlineClasses: false };

Deno.test("entries: the policy value", () => {
  const c = compilePolicy(policy);
  const e = encodePolicyEntries(c, 7, 1000, PLAIN);
  assert.equal(e.slot, 7);
  assert.equal(e.counterBase, 1000);
  assert.equal(e.counterCount, 8);
  assert.equal(e.policy.length, PolicyValue.size);
  const v = decode(PolicyValue, e.policy);
  assert.deepEqual(v.default_counter, [1006, 1007]);
  assert.deepEqual([...(v.flags as Uint8Array)], [PF_CIDR4 | PF_CIDR6, 0]);
  assert.deepEqual([...(v.nd_named as Uint8Array)], [0, 1 << 2]);
  assert.deepEqual([...(v.exact_protos as Uint8Array)], [
    c.dirs[0].exactProtos,
    c.dirs[1].exactProtos,
  ]);
  assert.deepEqual([...(v.any_protos as Uint8Array)], [c.dirs[0].anyProtos, c.dirs[1].anyProtos]);
  assert.equal(v.default_action, ACTION_DENY);
  assert.equal(1000 + counterOffset(3, null, 1), 1007);
  assert.equal(1000 + counterOffset(3, 2, 1), 1005);
  assert.deepEqual(counterAt(3, 7), { rule: null, dir: 1 });
  assert.deepEqual(counterAt(3, 5), { rule: 2, dir: 1 });
  assert.equal(policyCounterCount(3), 8);
});

Deno.test("entries: address keys and classes", () => {
  const c = compilePolicy(policy);
  const e = encodePolicyEntries(c, 7, 1000, PLAIN);
  assert.equal(e.lpmV4.count, 1);
  assert.equal(e.lpmV4.keys.length, LpmV4Key.size);
  const k4 = decode(LpmV4Key, e.lpmV4.keys);
  assert.deepEqual({ ...k4, addr: [...(k4.addr as Uint8Array)] }, {
    prefixlen: ADDR_KEY_HEAD_BITS + 8,
    slot: 7,
    dir: 0,
    pad: 0,
    addr: [10, 0, 0, 0],
  });
  assert.equal(e.lpmV4.keys[4], 0, "slot is big-endian in LPM keys");
  assert.equal(e.lpmV4.keys[5], 7);
  assert.equal(decode(ClassValue, e.lpmV4.values).cls, c.dirs[0].v4[0].cls);
  const k6 = decode(LpmV6Key, e.lpmV6.keys);
  assert.equal(k6.prefixlen, ADDR_KEY_HEAD_BITS + 8);
  assert.equal((k6.addr as Uint8Array)[0], 0xfd);
});

Deno.test("entries: rule_hash keys and verdicts (hash mode)", () => {
  const c = compilePolicy(policy);
  const e = encodePolicyEntries(c, 7, 1000, PLAIN);
  const n = c.dirs[0].hash.length + c.dirs[1].hash.length;
  assert.equal(e.ruleHash.count, n);
  assert.equal(e.ruleHash.keys.length, n * RuleKey.size);
  assert.equal(e.ruleHash.values.length, n * VerdictValue.size);
  const keys = records(e.ruleHash.keys, RuleKey.size).map((b) => decode(RuleKey, b));
  const values = records(e.ruleHash.values, VerdictValue.size).map((b) => decode(VerdictValue, b));
  let i = 0;
  for (let dir = 0; dir < 2; dir++) {
    for (const h of c.dirs[dir].hash) {
      assert.deepEqual(keys[i], {
        slot: 7,
        dir,
        proto: h.proto,
        cls: h.cls,
        l4: h.l4,
        kind: h.kind,
      });
      assert.deepEqual(values[i], {
        counter: 1000 + 2 * h.rule + dir,
        action: policy.rules[h.rule].action === "allow" ? ACTION_ALLOW : ACTION_DENY,
      });
      i++;
    }
  }
  const tcp22 = keys.findIndex((k) => k.proto === PROTO_TCP && k.l4 === 22);
  assert.equal(values[tcp22].counter, 1000);
  const udp53egress = keys.findIndex((k) => k.proto === PROTO_UDP && k.l4 === 53 && k.dir === 1);
  assert.deepEqual(values[udp53egress], { counter: 1003, action: ACTION_DENY });
  assert.ok(keys.every((k) => k.kind === KIND_EXACT || (k.kind === KIND_ANY && k.l4 === 0)));
  assert.equal(e.portLpm.count, 0);
});

Deno.test("entries: port_lpm keys (LPM mode)", () => {
  const c = compilePolicy(policy, { forceMode: "lpm" });
  const e = encodePolicyEntries(c, 4095, 0, PLAIN);
  assert.equal(e.ruleHash.count, 0);
  assert.equal(decode(PolicyValue, e.policy).flags instanceof Uint8Array, true);
  assert.deepEqual([...(decode(PolicyValue, e.policy).flags as Uint8Array)], [
    PF_CIDR4 | PF_CIDR6 | PF_LPM_PORTS,
    PF_LPM_PORTS,
  ]);
  const keys = records(e.portLpm.keys, PortLpmKey.size).map((b) => decode(PortLpmKey, b));
  const values = records(e.portLpm.values, VerdictValue.size).map((b) => decode(VerdictValue, b));
  let i = 0;
  for (let dir = 0; dir < 2; dir++) {
    for (const l of c.dirs[dir].lpm) {
      assert.deepEqual(keys[i], {
        prefixlen: PORT_KEY_HEAD_BITS + l.l4len,
        slot: 4095,
        dir,
        proto: l.proto,
        cls: l.cls,
        l4: l.l4,
      });
      assert.equal(values[i].counter, 2 * l.rule + dir);
      i++;
    }
  }
  // 53-54 is one /15 prefix; l4 is big-endian in the key.
  const raw = records(e.portLpm.keys, PortLpmKey.size).find((b) => decode(PortLpmKey, b).l4 === 52);
  assert.equal(raw, undefined, "53-54 is not aligned: two /16 prefixes");
  const k53 = records(e.portLpm.keys, PortLpmKey.size).find((b) =>
    decode(PortLpmKey, b).l4 === 53
  )!;
  assert.deepEqual(
    [...k53.subarray(PortLpmKey.fields.find((f) => f.name === "l4")!.offset)].slice(0, 2),
    [0, 53],
  );
});

Deno.test("entries: deletion keys are exactly the written keys", () => {
  for (const forceMode of ["hash", "lpm"] as const) {
    const c = compilePolicy(policy, { forceMode });
    const e = encodePolicyEntries(c, 9, 100);
    const k = encodePolicyKeys(c, 9);
    for (const map of ["lpmV4", "lpmV6", "ruleHash", "portLpm"] as const) {
      assert.deepEqual(k[map].keys, e[map].keys, map);
      assert.equal(k[map].count, e[map].count);
      assert.equal(k[map].values.length, 0);
    }
  }
});

Deno.test("entries: slot and counter range are checked", () => {
  const c = compilePolicy(policy);
  assert.throws(() => encodePolicyEntries(c, 0, 0), /slot must be 1\.\.4095, not 0/);
  assert.throws(() => encodePolicyEntries(c, MAX_SLOTS, 0), /slot must be/);
  assert.throws(() => encodePolicyKeys(c, -1), /slot must be/);
  assert.throws(() => encodePolicyEntries(c, 1, MAX_COUNTERS - 7), /exceed/);
  encodePolicyEntries(c, 1, MAX_COUNTERS - 8);
});

Deno.test("LayoutWriter writes what encodeInto writes, for every layout", () => {
  const rng = new Rng(11);
  for (const layout of LAYOUTS) {
    for (let round = 0; round < 20; round++) {
      const values: Record<string, number | bigint | number[] | Uint8Array> = {};
      for (const f of layout.fields) {
        if (rng.chance(0.2)) continue; // absent fields stay zero
        const m = /^(u8|u32)\[(\d+)\]$/.exec(f.type);
        if (m) {
          const n = rng.int(0, Number(m[2]));
          values[f.name] = m[1] === "u8"
            ? rng.bytes(n)
            : Array.from({ length: n }, () => rng.int(0, 0xffffffff));
        } else if (f.type === "u64") {
          values[f.name] = BigInt(rng.int(0, 0xffffffff)) << 20n;
        } else {
          const bits = f.type === "u8" ? 8 : f.type === "u32" ? 32 : 16;
          values[f.name] = rng.int(0, 2 ** bits - 1);
        }
      }
      const out = new Uint8Array(3 * layout.size);
      new LayoutWriter(layout).write(new DataView(out.buffer), out, 2, values);
      assert.deepEqual(out.subarray(2 * layout.size), encode(layout, values), layout.cName);
      assert.ok(out.subarray(0, 2 * layout.size).every((b) => b === 0));
    }
  }
});

Deno.test("entries: fast paths: address hashes, inline class decisions, fast L4 tables", () => {
  const c = compilePolicy(policy);
  const e = encodePolicyEntries(c, 7, 1000, { fastTables: [3, 5] });
  const v = decode(PolicyValue, e.policy);
  // Few CIDR lengths: hashed, not in the tries.
  assert.equal(e.lpmV4.count + e.lpmV6.count, 0);
  assert.equal(e.addr4Hash.count, c.dirs[0].v4.length + c.dirs[1].v4.length);
  assert.ok(((v.flags as Uint8Array)[0] & PF_ADDR4_HASH) !== 0);
  assert.equal((v.addr_lens4 as Uint8Array)[0], 8);
  assert.equal((v.addr_lens4 as Uint8Array)[1], ADDR_LEN_END);
  const k4 = decode(Addr4Key, e.addr4Hash.keys);
  assert.deepEqual([k4.slot, k4.dir, k4.len, [...(k4.addr as Uint8Array)]], [7, 0, 8, [
    10,
    0,
    0,
    0,
  ]]);
  // The class of 10.0.0.0/8 carries its decisions: no rule_hash entry for it.
  const cls = decode(ClassValue, e.addr4Hash.values);
  assert.ok(Number(cls.inline_count) <= CLASS_INLINE_MAX);
  const ruleKeys = records(e.ruleHash.keys, RuleKey.size).map((b) => decode(RuleKey, b));
  assert.ok(ruleKeys.every((k) => k.cls === 0), "inline classes left entries in rule_hash");
  // Class 0's exact entries went to the fast tables given, in order.
  assert.deepEqual(e.fast.map((f) => f.table), [3, 5].slice(0, e.fast.length));
  for (const f of e.fast) {
    assert.equal(f.values.length, FAST_TABLE_SIZE);
    assert.ok(f.values.some((x) => x !== 0));
  }
  const fastTable = v.fast_table as Uint8Array;
  const inFastTable = (k: Record<string, unknown>) =>
    fastTable[Number(k.dir) * 6 + PROTO_INDEX[Number(k.proto)]] !== 0;
  assert.ok(
    ruleKeys.every((k) => !(k.cls === 0 && k.kind === KIND_EXACT && inFastTable(k))),
    "class 0 exact entries left in rule_hash although a fast table holds them",
  );
  // Deletion keys match what was written, fast tables included.
  const k = encodePolicyKeys(c, 7, { fastTables: [3, 5] });
  assert.deepEqual(k.addr4Hash.keys, e.addr4Hash.keys);
  assert.deepEqual(k.ruleHash.keys, e.ruleHash.keys);
  assert.deepEqual(k.fastTables, e.fast.map((f) => f.table));
});
