import assert from "node:assert/strict";
import { load as parse } from "js-yaml";
import { PROTO_TCP } from "../../../lib/abi/layout.ts";
import { buildFrame } from "../../../lib/model/frame.ts";
import { compilePolicy } from "../../../lib/policy/compile/compile.ts";
import {
  DEFAULT_DENIED_TCP_PORTS,
  defaultPolicy,
  defaultPolicyYaml,
} from "../../../lib/policy/model/default.ts";
import { evaluate } from "../../../lib/model/evaluate.ts";

const PROTOTYPE_PORTS = [80, 20, 21, 23, 25, 110, 143, 139, 445, 1521, 161, 162, 70];

Deno.test("default policy: the prototype's list, TCP, both directions, allow otherwise", () => {
  const p = defaultPolicy();
  assert.equal(p.name, "default");
  assert.equal(p.defaultAction, "allow");
  assert.equal(p.selector, undefined);
  assert.deepEqual(p.rules.map((r) => r.ports![0].from), PROTOTYPE_PORTS);
  assert.deepEqual(DEFAULT_DENIED_TCP_PORTS.map((e) => e.port), PROTOTYPE_PORTS);
  for (const r of p.rules) {
    assert.equal(r.action, "deny");
    assert.equal(r.direction, "both");
    assert.equal(r.protocol, "tcp");
    assert.equal(r.ports!.length, 1);
    assert.equal(r.ports![0].from, r.ports![0].to);
    assert.equal(r.cidrs, undefined);
    assert.match(r.name, /^deny-[a-z0-9-]+$/);
  }
  assert.equal(new Set(p.rules.map((r) => r.name)).size, p.rules.length, "names are unique");
  assert.notEqual(defaultPolicy(), defaultPolicy(), "a fresh copy each time");
});

Deno.test("default policy decides like the prototype", () => {
  const p = defaultPolicy();
  for (const dir of ["ingress", "egress"] as const) {
    for (const family of [4, 6] as const) {
      for (const port of PROTOTYPE_PORTS) {
        const d = evaluate(p, dir, buildFrame({ family, proto: "tcp", dport: port }));
        assert.equal(d.verdict, "deny", `${dir} ${family} ${port}`);
        assert.equal(d.rule, p.rules[PROTOTYPE_PORTS.indexOf(port)].name);
      }
      for (const port of [22, 443, 8080, 79, 81]) {
        assert.equal(
          evaluate(p, dir, buildFrame({ family, proto: "tcp", dport: port })).verdict,
          "allow",
        );
      }
      assert.equal(
        evaluate(p, dir, buildFrame({ family, proto: "udp", dport: 161 })).verdict,
        "allow",
      );
      assert.equal(
        evaluate(p, dir, buildFrame({ family, proto: "tcp", dport: 80, fragOffset: 10 })).verdict,
        "allow",
        "a later fragment has no port",
      );
    }
  }
});

Deno.test("default policy compiles to 13 exact TCP keys per direction", () => {
  const c = compilePolicy(defaultPolicy());
  assert.equal(c.counterCount, 28);
  for (const d of c.dirs) {
    assert.equal(d.mode, "hash");
    assert.equal(d.flags, 0);
    assert.equal(d.hash.length, 13);
    assert.ok(d.hash.every((e) => e.proto === PROTO_TCP && e.cls === 0));
    assert.deepEqual(
      d.hash.map((e) => e.l4).sort((a, b) => a - b),
      [...PROTOTYPE_PORTS].sort((a, b) => a - b),
    );
  }
});

Deno.test("default policy YAML is the SPEC §3.1 format and reads back to the same policy", () => {
  const text = defaultPolicyYaml();
  assert.match(text, /^# /, "starts with a comment saying what it is");
  assert.match(text, /ports: \[80\]/);
  // deno-lint-ignore no-explicit-any
  const doc = parse(text) as any;
  assert.deepEqual(Object.keys(doc), ["policies"]);
  assert.equal(doc.policies.length, 1);
  const [y] = doc.policies;
  assert.equal(y.name, "default");
  assert.equal(y.defaultAction, "allow");
  const p = defaultPolicy();
  assert.deepEqual(
    y.rules,
    p.rules.map((r) => ({
      name: r.name,
      action: r.action,
      direction: r.direction,
      protocol: r.protocol,
      ports: [r.ports![0].from],
    })),
  );
});
