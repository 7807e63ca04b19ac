/**
 * Past the capacity contract, a map that fills up is reported by its name and
 * size, never as a bare errno, and the policy in force is untouched. (The
 * compiler keeps every file within its share, so only policies compiled past
 * that share, as here, can get there.)
 */
import assert from "node:assert/strict";
import { Datapath } from "../../lib/datapath/object.ts";
import { MapFullError, PolicySlots } from "../../lib/datapath/policy_slots.ts";
import { MAX_LPM_ENTRIES } from "../../lib/abi/layout.ts";
import { CompileBudget } from "../../lib/policy/compile/budget.ts";
import { compilePolicy } from "../../lib/policy/compile/compile.ts";
import { makeCidr } from "../../lib/net/cidr.ts";
import type { Policy } from "../../lib/policy/model/types.ts";

/** `n` rules, each a /24 of its own and a wide port range: ~30 port_lpm prefixes a rule. */
function lpmHeavy(name: string, n: number): Policy {
  return {
    name,
    defaultAction: "allow",
    rules: Array.from({ length: n }, (_, i) => ({
      name: `r${i}`,
      action: "deny" as const,
      direction: "ingress" as const,
      protocol: "tcp" as const,
      ports: [{ from: 2, to: 65534 }],
      cidrs: [makeCidr(4, new Uint8Array([10, i >> 8, i & 255, 0]), 24)],
    })),
  };
}

Deno.test("capacity: a full map is named with its size, and the policy in force stays", () => {
  const dp = Datapath.load();
  try {
    const slots = new PolicySlots(dp);
    // More than half the map each: twice the file share a compile would allow.
    const unbounded = () => new CompileBudget({ port_lpm: MAX_LPM_ENTRIES });
    const a = compilePolicy(lpmHeavy("a", 18_000), { budget: unbounded() });
    const b = compilePolicy(lpmHeavy("b", 18_000), { budget: unbounded() });
    const entries = a.dirs[0].lpm.length;
    assert.ok(entries > MAX_LPM_ENTRIES / 2, `${entries} entries`);
    const first = slots.install(a);
    assert.throws(() => slots.install(b), (e: Error) => {
      assert.ok(e instanceof MapFullError, String(e));
      assert.equal(e.map, "port_lpm");
      assert.equal(e.capacity, MAX_LPM_ENTRIES);
      assert.match(
        e.message,
        new RegExp(
          `^the port_lpm map is full: it holds ${MAX_LPM_ENTRIES.toLocaleString("en-US")}`,
        ),
      );
      return true;
    });
    // The policy in force keeps its entries (the first and the last written)...
    const keys = first.keys.portLpm;
    const size = keys.keys.length / keys.count;
    assert.ok(dp.maps.port_lpm.lookup(keys.keys.subarray(0, size)));
    assert.ok(dp.maps.port_lpm.lookup(keys.keys.subarray((keys.count - 1) * size)));
    // ...and the failed install took its own back: once the first goes, the second fits.
    slots.remove(first);
    slots.remove(slots.install(b));
  } finally {
    dp.close();
  }
});
