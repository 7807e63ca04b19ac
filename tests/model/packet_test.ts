import assert from "node:assert/strict";
import {
  buildFrame,
  buildFrameDetailed,
  checksum,
  crc32c,
  type FrameSpec,
} from "../../lib/model/frame.ts";
import { parseIp } from "../../lib/net/cidr.ts";
import { type IpPacket, parsePacket } from "../../lib/model/packet.ts";

const ip = (text: string) => parseIp(text).addr;

function parseIpPacket(frame: Uint8Array): IpPacket {
  const p = parsePacket(frame);
  assert.equal(p.kind, "ip", JSON.stringify(p));
  return p as IpPacket;
}

function assertMalformed(frame: Uint8Array, re?: RegExp): void {
  const p = parsePacket(frame);
  assert.equal(p.kind, "malformed", JSON.stringify(p));
  if (re && p.kind === "malformed") assert.match(p.reason, re);
}

Deno.test("builder → parser round trip, every protocol, family, tags, options, ext headers", () => {
  const protos = [6, 17, 132, 1, 58, 47, 50, 59];
  for (const family of [4, 6] as const) {
    for (const proto of protos) {
      for (const tags of [0, 1, 2]) {
        for (const extra of [false, true]) {
          const spec: FrameSpec = {
            family,
            proto,
            src: family === 4 ? "10.1.2.3" : "fd00::1:2",
            dst: family === 4 ? "192.0.2.77" : "2001:db8::77",
            sport: 1234,
            dport: 4321,
            icmpType: 135,
            icmpCode: 9,
            vlans: Array.from(
              { length: tags },
              (_, i) => ({ tpid: i ? 0x8100 : 0x88a8, vid: 10 + i }),
            ),
            payloadLength: 5,
          };
          if (extra && family === 4) spec.ipv4Options = [1, 1, 1, 0, 7, 7, 4];
          if (extra && family === 6) {
            spec.ipv6Ext = [{ kind: "hbh" }, { kind: "routing", size: 24 }, {
              kind: "ah",
              size: 12,
            }, {
              kind: "dstopts",
            }];
          }
          const p = parseIpPacket(buildFrame(spec));
          const what = `${family}/${proto}/${tags}/${extra}`;
          assert.equal(p.family, family, what);
          assert.equal(p.proto, proto, what);
          assert.deepEqual(p.src, ip(spec.src as string), what);
          assert.deepEqual(p.dst, ip(spec.dst as string), what);
          assert.equal(p.laterFragment, false);
          if (proto === 1 || proto === 58) {
            assert.equal(p.icmpType, 135);
            assert.equal(p.icmpCode, 9);
            assert.equal(p.l4, (135 << 8) | 9);
          } else if (proto === 6 || proto === 17 || proto === 132) {
            assert.equal(p.sport, 1234);
            assert.equal(p.l4, 4321);
          } else {
            assert.equal(p.l4, undefined, what);
          }
        }
      }
    }
  }
});

Deno.test("builder: protocol names, defaults and checksums", () => {
  const tcp = buildFrameDetailed({ family: 4, proto: "tcp", payloadLength: 3 });
  const f = tcp.frame;
  assert.equal(f.length, 14 + 20 + 20 + 3);
  assert.equal(checksum(f, 14, 34, 0), 0, "IPv4 header checksum verifies");
  // TCP checksum over the pseudo-header verifies to 0.
  const pseudo = (src: Uint8Array, dst: Uint8Array, proto: number, len: number) => {
    let s = 0;
    for (const a of [src, dst]) for (let i = 0; i < a.length; i += 2) s += (a[i] << 8) | a[i + 1];
    return s + proto + (len & 0xffff) + (len >>> 16);
  };
  assert.equal(checksum(f, 34, f.length, pseudo(f.subarray(26, 30), f.subarray(30, 34), 6, 23)), 0);
  const udp6 = buildFrame({ family: 6, proto: "udp", payloadLength: 7 });
  assert.equal(
    checksum(udp6, 54, udp6.length, pseudo(udp6.subarray(22, 38), udp6.subarray(38, 54), 17, 15)),
    0,
  );
  const icmp6 = buildFrame({ family: 6, proto: "icmpv6", icmpType: 135 });
  assert.equal(
    checksum(
      icmp6,
      54,
      icmp6.length,
      pseudo(icmp6.subarray(22, 38), icmp6.subarray(38, 54), 58, 8),
    ),
    0,
  );
  const icmp4 = buildFrame({ family: 4, proto: "icmp", payloadLength: 4 });
  assert.equal(checksum(icmp4, 34, icmp4.length, 0), 0);
  assert.equal(crc32c(new TextEncoder().encode("123456789")), 0xe3069283);
  const sctp = buildFrame({ family: 4, proto: "sctp", payloadLength: 4 });
  const stored = new DataView(sctp.buffer).getUint32(34 + 8, true);
  const copy = sctp.slice(34);
  copy.fill(0, 8, 12);
  assert.equal(stored, crc32c(copy));
  assert.throws(() => buildFrame({ family: 4, proto: "gre" }), /unknown protocol "gre"/);
  assert.throws(() => buildFrame({ family: 4, proto: 6, src: "fd00::1" }), /4-byte addresses/);
});

Deno.test("Ethernet and VLAN: non-IP, tags, malformed", () => {
  assertMalformed(new Uint8Array(13), /Ethernet/);
  assertMalformed(new Uint8Array(0));
  const arp = buildFrame({ family: 4, proto: 6, etherType: 0x0806 });
  assert.deepEqual(parsePacket(arp), { kind: "nonip" });
  assert.deepEqual(
    parsePacket(arp.slice(0, 14)),
    { kind: "nonip" },
    "14 bytes of non-IP is non-IP",
  );
  const arpInVlan = buildFrame({ family: 4, proto: 6, etherType: 0x0806, vlans: [{}] });
  assert.deepEqual(parsePacket(arpInVlan), { kind: "nonip" });
  // Two tags are read; a third one makes the frame non-IP.
  parseIpPacket(buildFrame({ family: 4, proto: 6, vlans: [{ tpid: 0x88a8 }, { tpid: 0x8100 }] }));
  const three = buildFrame({ family: 6, proto: 6, vlans: [{}, {}, {}] });
  assert.deepEqual(parsePacket(three), { kind: "nonip" });
  // A tag needs 4 bytes.
  const tagged = buildFrame({ family: 4, proto: 6, vlans: [{}, {}] });
  assertMalformed(tagged.slice(0, 17), /VLAN tag 1/);
  assertMalformed(tagged.slice(0, 21), /VLAN tag 2/);
  assertMalformed(tagged.slice(0, 22), /IPv4 header needs 20/);
});

Deno.test("IPv4 header: length, version, IHL, options, fragments", () => {
  const base: FrameSpec = { family: 4, proto: 6 };
  assertMalformed(buildFrame(base).slice(0, 33), /IPv4 header needs 20/);
  assertMalformed(buildFrame({ ...base, raw: { ipVersion: 6 } }), /version 6/);
  assertMalformed(buildFrame({ ...base, raw: { ihl: 4 } }), /IHL 4/);
  assertMalformed(buildFrame({ ...base, raw: { ihl: 0 } }), /IHL 0/);
  const withOptions = buildFrame({ ...base, ipv4Options: new Uint8Array(12), dport: 22 });
  assert.equal(parseIpPacket(withOptions).l4, 22, "L4 found after the options");
  assertMalformed(withOptions.slice(0, 14 + 31), /options needs 32/);
  // IHL larger than the header the frame carries.
  assertMalformed(buildFrame({ ...base, raw: { ihl: 15 }, truncate: 14 + 59 }), /needs 60/);
  // Total length is not checked.
  const f = buildFrame({ ...base, dport: 99 });
  f[16] = 0xff;
  f[17] = 0xff;
  assert.equal(parseIpPacket(f).l4, 99);
  // Later fragment: no L4 parsed, even with nothing after the IP header.
  const later = buildFrame({ ...base, fragOffset: 1 });
  assert.equal(later.length, 34);
  const p = parseIpPacket(later);
  assert.equal(p.laterFragment, true);
  assert.equal(p.l4, undefined);
  assert.equal(p.proto, 6);
  // First fragment (MF, offset 0): L4 parsed and required.
  const first = buildFrame({ ...base, moreFragments: true, dport: 7 });
  assert.equal(parseIpPacket(first).l4, 7);
  assert.equal(parseIpPacket(first).laterFragment, false);
  assertMalformed(first.slice(0, 53), /TCP header needs 20/);
  // The fragment offset is 13 bits: the flags do not count.
  const df = buildFrame({ ...base, dport: 8 });
  df[20] = 0x40; // DF
  assert.equal(parseIpPacket(df).laterFragment, false);
});

Deno.test("IPv6 header and extension headers", () => {
  const base: FrameSpec = { family: 6, proto: 17, dport: 53 };
  assertMalformed(buildFrame(base).slice(0, 53), /IPv6 header needs 40/);
  assertMalformed(buildFrame({ ...base, raw: { ipVersion: 4 } }), /version 4/);
  // Each kind: walked, its 8 bytes and its full length required.
  for (const kind of ["hbh", "routing", "dstopts", "ah", "fragment"] as const) {
    const size = kind === "fragment" ? 8 : kind === "ah" ? 20 : 24;
    const f = buildFrame({ ...base, ipv6Ext: [{ kind, size }] });
    assert.equal(parseIpPacket(f).l4, 53, kind);
    assert.equal(parseIpPacket(f).proto, 17, kind);
    assertMalformed(f.slice(0, 54 + 7), /needs 8 bytes/);
    if (kind !== "fragment") {
      assertMalformed(f.slice(0, 54 + size - 1), new RegExp(`needs ${size} bytes`));
    }
  }
  // Six extension headers are fine; a seventh is malformed.
  const six = Array.from({ length: 6 }, () => ({ kind: "dstopts" as const }));
  assert.equal(parseIpPacket(buildFrame({ ...base, ipv6Ext: six })).l4, 53);
  assertMalformed(buildFrame({ ...base, ipv6Ext: [...six, { kind: "hbh" }] }), /more than 6/);
  // ... also when the extra one is a fragment header that would stop the walk.
  assertMalformed(
    buildFrame({ ...base, ipv6Ext: [...six, { kind: "fragment", fragOffset: 5 }] }),
    /more than 6/,
  );
  // A later fragment stops the walk: its next header is the protocol, no L4 parsed.
  const later = parseIpPacket(buildFrame({ ...base, fragOffset: 3 }));
  assert.equal(later.laterFragment, true);
  assert.equal(later.proto, 17);
  assert.equal(later.l4, undefined);
  const laterThenExt = parseIpPacket(
    buildFrame({ ...base, ipv6Ext: [{ kind: "fragment", fragOffset: 3 }, { kind: "dstopts" }] }),
  );
  assert.equal(laterThenExt.proto, 60, "the walk stopped at the later fragment");
  // The sixth header being a later fragment whose next header is another extension.
  const sixthLater = parseIpPacket(buildFrame({
    ...base,
    ipv6Ext: [...six.slice(0, 5), { kind: "fragment", fragOffset: 1 }, { kind: "hbh" }],
  }));
  assert.equal(sixthLater.proto, 0);
  assert.equal(sixthLater.laterFragment, true);
  // First fragment (offset 0): the walk goes on.
  const first = parseIpPacket(buildFrame({ ...base, moreFragments: true }));
  assert.equal(first.laterFragment, false);
  assert.equal(first.l4, 53);
  // No-next-header and ESP are protocols like any other.
  assert.equal(parseIpPacket(buildFrame({ family: 6, proto: 59 })).proto, 59);
  assert.equal(
    parseIpPacket(buildFrame({ family: 6, proto: 50, ipv6Ext: [{ kind: "hbh" }] })).proto,
    50,
  );
});

Deno.test("L4 headers: minimum lengths, ICMP numbers at face value", () => {
  const need: [number | string, number][] = [["tcp", 20], ["udp", 8], ["sctp", 12], ["icmp", 8], [
    "icmpv6",
    8,
  ]];
  for (const family of [4, 6] as const) {
    for (const [proto, n] of need) {
      const f = buildFrameDetailed({ family, proto });
      assert.equal(f.frame.length, f.l4Offset + n);
      parseIpPacket(f.frame);
      assertMalformed(f.frame.slice(0, f.l4Offset + n - 1), /header needs/);
    }
    // Other protocols need nothing after the IP header(s).
    const gre = buildFrameDetailed({ family, proto: 47 });
    assert.equal(gre.frame.length, gre.l4Offset);
    assert.equal(parseIpPacket(gre.frame).l4, undefined);
  }
  // ICMP in IPv6 and ICMPv6 in IPv4 are parsed as such.
  const icmpIn6 = parseIpPacket(buildFrame({ family: 6, proto: 1, icmpType: 8, icmpCode: 0 }));
  assert.equal(icmpIn6.l4, 0x0800);
  const icmp6In4 = parseIpPacket(buildFrame({ family: 4, proto: 58, icmpType: 135, icmpCode: 0 }));
  assert.equal(icmp6In4.icmpType, 135);
});

Deno.test("truncation anywhere before the end of the L4 header is malformed", () => {
  const specs: FrameSpec[] = [
    { family: 4, proto: 6, vlans: [{}, {}], ipv4Options: new Uint8Array(8) },
    { family: 6, proto: 132, vlans: [{}], ipv6Ext: [{ kind: "hbh", size: 16 }, { kind: "ah" }] },
    { family: 6, proto: 58, ipv6Ext: [{ kind: "fragment" }, { kind: "routing" }] },
  ];
  for (const spec of specs) {
    const { frame, boundaries } = buildFrameDetailed(spec);
    assert.equal(boundaries[boundaries.length - 1], frame.length);
    for (let n = 0; n <= frame.length; n++) {
      const kind = parsePacket(frame.slice(0, n)).kind;
      assert.equal(kind, n === frame.length ? "ip" : "malformed", `cut at ${n}`);
    }
  }
});
