import assert from "node:assert/strict";
import {
  CidrError,
  compareCidrs,
  contains,
  containsCidr,
  formatIp,
  formatIPv6,
  makeCidr,
  parseCidr,
  parseCidrDetailed,
  parseIp,
  parseIPv4,
  parseIPv6,
} from "../../lib/net/cidr.ts";
import { Rng } from "../helpers/gen.ts";

const bytes = (...b: number[]) => Uint8Array.from(b);

Deno.test("IPv4 addresses parse and format", () => {
  assert.deepEqual(parseIPv4("10.1.2.3"), bytes(10, 1, 2, 3));
  assert.deepEqual(parseIPv4("0.0.0.0"), bytes(0, 0, 0, 0));
  assert.deepEqual(parseIPv4("255.255.255.255"), bytes(255, 255, 255, 255));
  assert.equal(formatIp(bytes(192, 0, 2, 1)), "192.0.2.1");
});

Deno.test("IPv4 errors say what is wrong", () => {
  const cases: [string, RegExp][] = [
    ["", /empty/],
    ["1.2.3", /3 dot-separated parts/],
    ["1.2.3.4.5", /5 dot-separated parts/],
    ["256.1.1.1", /larger than 255/],
    ["1.2.3.999", /larger than 255/],
    ["01.2.3.4", /leading zero/],
    ["1.2.3.a", /not a decimal/],
    ["1..3.4", /part 2 is empty/],
    [" 1.2.3.4", /not a decimal/],
    ["1.2.3.4 ", /not a decimal/],
    ["+1.2.3.4", /not a decimal/],
  ];
  for (const [text, re] of cases) {
    assert.throws(() => parseIPv4(text), (e: Error) => {
      assert.ok(e instanceof CidrError, `${text}: ${e}`);
      assert.match(e.message, re, text);
      assert.ok(e.message.includes(`"${text}"`), e.message);
      return true;
    });
  }
});

Deno.test("IPv6: every text form parses", () => {
  const cases: [string, string][] = [
    ["::", "0000000000000000000000000000000000"],
    ["::1", "00000000000000000000000000000001"],
    ["1::", "00010000000000000000000000000000"],
    ["2001:db8::1", "20010db8000000000000000000000001"],
    ["2001:DB8:0:0:0:0:0:1", "20010db8000000000000000000000001"],
    ["2001:0db8:0000:0000:0000:0000:0000:0001", "20010db8000000000000000000000001"],
    ["1:2:3:4:5:6:7:8", "00010002000300040005000600070008"],
    ["1:2:3:4:5:6:7::", "00010002000300040005000600070000"],
    ["::2:3:4:5:6:7:8", "00000002000300040005000600070008"],
    ["::ffff:1.2.3.4", "00000000000000000000ffff01020304"],
    ["64:ff9b::10.0.0.1", "0064ff9b00000000000000000a000001"],
    ["1:2:3:4:5:6:1.2.3.4", "00010002000300040005000601020304"],
    ["::1.2.3.4", "00000000000000000000000001020304"],
    ["fe80::", "fe800000000000000000000000000000"],
  ];
  for (const [text, hex] of cases) {
    const got = [...parseIPv6(text)].map((b) => b.toString(16).padStart(2, "0")).join("");
    assert.equal(got, hex.slice(0, 32), text);
  }
});

Deno.test("IPv6 errors say what is wrong", () => {
  const cases: [string, RegExp][] = [
    ["", /empty/],
    [":::", /empty group/],
    ["1::2::3", /more than once/],
    ["12345::", /more than 4 hex digits/],
    ["g::", /not hex/],
    ["1:2:3:4:5:6:7:8:9", /9 groups, not 8/],
    ["1:2:3:4:5:6:7", /7 groups, not 8/],
    ["1:2:3:4:5:6:7:8::", /8 groups besides/],
    ["fe80::1%eth0", /zone/],
    ["::1.2.3.4:5", /only allowed as the last 32 bits/],
    ["1.2.3.4::", /only allowed as the last 32 bits/],
    ["::1.2.3", /embedded IPv4/],
    [":1::", /empty group/],
    ["1::2:", /empty group/],
    [":1:2:3:4:5:6:7", /single ":"/],
  ];
  for (const [text, re] of cases) {
    assert.throws(() => parseIPv6(text), (e: Error) => {
      assert.ok(e instanceof CidrError);
      assert.match(e.message, re, `${text}: ${e.message}`);
      return true;
    });
  }
});

Deno.test("IPv6 formats canonically (RFC 5952)", () => {
  const cases: [string, string][] = [
    ["2001:DB8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ["2001:0:0:1:0:0:0:1", "2001:0:0:1::1"],
    ["1:0:0:2:0:0:3:4", "1::2:0:0:3:4"],
    ["1:0:2:3:4:5:6:7", "1:0:2:3:4:5:6:7"],
    ["0:0:0:0:0:0:0:0", "::"],
    ["0:0:0:0:0:0:0:1", "::1"],
    ["::ffff:0102:0304", "::ffff:1.2.3.4"],
    ["2001:db8:0000:0000:0000:0000:0000:0000", "2001:db8::"],
  ];
  for (const [text, want] of cases) assert.equal(formatIPv6(parseIPv6(text)), want, text);
});

Deno.test("address text round-trips through bytes", () => {
  const rng = new Rng(7);
  for (let i = 0; i < 2000; i++) {
    const b = rng.bytes(16);
    // Sprinkle zero groups so that compression is exercised.
    for (let g = 0; g < 8; g++) if (rng.chance(0.4)) b[2 * g] = b[2 * g + 1] = 0;
    const text = formatIPv6(b);
    assert.deepEqual(parseIPv6(text), b, text);
    assert.equal(formatIPv6(parseIPv6(text.toUpperCase())), text);
    const v4 = rng.bytes(4);
    assert.deepEqual(parseIp(formatIp(v4)).addr, v4);
  }
});

Deno.test("CIDRs parse, normalise and report host bits", () => {
  assert.deepEqual(parseCidr("10.0.0.0/8"), makeCidr(4, bytes(10, 0, 0, 0), 8));
  assert.equal(parseCidr("10.1.2.3/8").text, "10.0.0.0/8");
  assert.equal(parseCidr("10.1.2.3/31").text, "10.1.2.2/31");
  assert.equal(parseCidr("0.0.0.0/0").text, "0.0.0.0/0");
  assert.equal(parseCidr("1.2.3.4/0").text, "0.0.0.0/0");
  assert.equal(parseCidr("FD00::A/128").text, "fd00::a/128");
  assert.equal(parseCidr("fd00::ff/120").text, "fd00::/120");
  assert.equal(parseCidr("2001:db8:ffff::/33").text, "2001:db8:8000::/33");
  assert.equal(parseCidr("::/0").text, "::/0");
  assert.equal(parseCidr("::ffff:10.0.0.0/104").text, "::ffff:10.0.0.0/104");
  assert.equal(parseCidr("10.0.0.1").text, "10.0.0.1/32");
  assert.equal(parseCidr("fd00::1").text, "fd00::1/128");
  const d = parseCidrDetailed("10.1.2.3/8");
  assert.equal(d.hostBitsSet, true);
  assert.equal(d.bare, false);
  assert.equal(parseCidrDetailed("10.0.0.0/8").hostBitsSet, false);
  assert.equal(parseCidrDetailed("10.0.0.1").bare, true);
  assert.throws(
    () => parseCidr("10.1.2.3/8", { hostBits: "reject" }),
    /did you mean 10\.0\.0\.0\/8/,
  );
  assert.throws(() => parseCidr("10.0.0.1", { bareAddress: "reject" }), /prefix length/);
});

Deno.test("CIDR errors say what is wrong", () => {
  const cases: [string, RegExp][] = [
    ["10.0.0.0/33", /larger than 32 for IPv4/],
    ["::/129", /larger than 128 for IPv6/],
    ["10.0.0.0/", /prefix length "" is not/],
    ["10.0.0.0/08", /leading zeros/],
    ["10.0.0.0/-1", /prefix length "-1"/],
    ["10.0.0.0/8/9", /prefix length "8\/9"/],
    ["10.0.0.0 /8", /invalid CIDR "10\.0\.0\.0 \/8": invalid IPv4/],
    ["10.0.0/8", /3 dot-separated parts/],
    ["fd00::g/64", /not hex/],
    ["/8", /empty/],
  ];
  for (const [text, re] of cases) {
    assert.throws(() => parseCidr(text), (e: Error) => {
      assert.ok(e instanceof CidrError);
      assert.match(e.message, re, `${text}: ${e.message}`);
      return true;
    });
  }
});

Deno.test("contains and containsCidr", () => {
  const net = parseCidr("10.1.0.0/16");
  assert.ok(contains(net, bytes(10, 1, 0, 0)));
  assert.ok(contains(net, bytes(10, 1, 255, 255)));
  assert.ok(!contains(net, bytes(10, 0, 255, 255)));
  assert.ok(!contains(net, bytes(10, 2, 0, 0)));
  const odd = parseCidr("10.1.2.128/25");
  assert.ok(contains(odd, bytes(10, 1, 2, 128)));
  assert.ok(!contains(odd, bytes(10, 1, 2, 127)));
  assert.ok(contains(parseCidr("0.0.0.0/0"), bytes(1, 2, 3, 4)));
  assert.ok(!contains(parseCidr("::/0"), bytes(1, 2, 3, 4)), "no family crossing");
  assert.ok(!contains(parseCidr("0.0.0.0/0"), new Uint8Array(16)), "no family crossing");
  assert.ok(contains(parseCidr("fd00::/8"), parseIPv6("fdff::1")));
  assert.ok(!contains(parseCidr("fd00::/8"), parseIPv6("fe00::1")));
  assert.ok(containsCidr(parseCidr("10.0.0.0/8"), net));
  assert.ok(containsCidr(net, net));
  assert.ok(!containsCidr(net, parseCidr("10.0.0.0/8")));
  assert.ok(!containsCidr(parseCidr("::/0"), net));
  assert.ok(compareCidrs(parseCidr("10.0.0.0/8"), net) < 0);
  assert.ok(compareCidrs(parseCidr("10.0.0.0/8"), parseCidr("10.0.0.0/9")) < 0);
  assert.ok(compareCidrs(net, parseCidr("::/0")) < 0);
});
