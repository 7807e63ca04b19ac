/**
 * The netlink codecs and the request/response logic of the rtnetlink client,
 * without privileges: hand-built byte arrays, replies captured from a real
 * kernel (6.18, x86-64, saved as hex below), and a fake transport.
 */

import { mulberry32 } from "../helpers/gen.ts";
import assert from "node:assert/strict";
import {
  attributesByType,
  decodeAttributes,
  decodeNested,
  encodeAttribute,
  nestedAttribute,
  readS32,
  readString,
  readU32,
  s32Attribute,
  stringAttribute,
  u32Attribute,
} from "../../lib/netlink/attributes.ts";
import { NetlinkDecodeError, NetlinkError } from "../../lib/netlink/errors.ts";
import {
  decodeIfInfoMsg,
  decodeLinkMessage,
  encodeGetLinkRequest,
  encodeIfInfoMsg,
  type Link,
} from "../../lib/netlink/link.ts";
import {
  decodeDoneMessage,
  decodeErrorMessage,
  decodeMessages,
  encodeMessage,
  type NlMsgHeader,
} from "../../lib/netlink/message.ts";
import { decodeNsidMessage, encodeGetNsidRequest } from "../../lib/netlink/nsid.ts";
import { RtnetlinkClient } from "../../lib/netlink/rtnetlink.ts";
import type { NetlinkTransport } from "../../lib/netlink/socket.ts";

/** Bytes from hex (whitespace ignored). */
function hex(text: string): Uint8Array {
  const clean = text.replace(/\s+/g, "");
  return new Uint8Array(clean.match(/../g)!.map((b) => parseInt(b, 16)));
}

/** Little-endian bytes of u16/u32 values, for hand-built messages (x86-64 is little-endian). */
function le16(v: number): number[] {
  return [v & 0xff, (v >> 8) & 0xff];
}
function le32(v: number): number[] {
  return [v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, (v >>> 24) & 0xff];
}

/** A hand-built attribute: header, payload, zero padding. */
function attr(type: number, payload: number[]): number[] {
  const len = 4 + payload.length;
  return [...le16(len), ...le16(type), ...payload, ...new Array((4 - (len % 4)) % 4).fill(0)];
}

/** A hand-built message: header then body. */
function msg(type: number, flags: number, seq: number, pid: number, body: number[]): number[] {
  return [
    ...le32(16 + body.length),
    ...le16(type),
    ...le16(flags),
    ...le32(seq),
    ...le32(pid),
    ...body,
  ];
}

/** The port id of the socket the captures were made on. */
const CAPTURE_PORT_ID = 0x23fd;

/** RTM_GETLINK for "tfwncap0", seq 1, as encodeGetLinkRequest built it (and the kernel accepted). */
const CAPTURED_GETLINK_VETH_REQUEST = hex(
  "380000001200010001000000000000000000000000000000000000000000000008001d00080000000d000300" +
    "7466776e6361703000000000",
);
/** The kernel's RTM_NEWLINK reply: host end of a veth (ifindex 7, peer ifindex 2 in nsid 0), xdpgeneric prog 141. */
const CAPTURED_GETLINK_VETH_REPLY = hex(
  "840400001000000001000000fd230000000001000700000043100100000000000d0003007466776e63617030" +
    "0000000008000d00e803000005001000060000000500110000000000050043000000000008000400dc050000" +
    "080032004400000008003300ffff000008001b000000000008001e000000000008003d000000000008001f00" +
    "0200000008002800ffff0000080029000000010008003a000000010008003f00000001000800400000000100" +
    "08003b00f8ff070008003c00ffff000008004200000000000800200002000000050021000100000008002300" +
    "0200000008002f00010000000800300001000000060044000000000006004500000000000500270000000000" +
    "0a00010056ca2d19caba00000a000200ffffffffffff0000cc0017000b000000000000000c00000000000000" +
    "6203000000000000bc0300000000000000000000000000000000000000000000000000000000000000000000" +
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000" +
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000" +
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000" +
    "0000000000000000640007000b0000000c00000062030000bc03000000000000000000000000000000000000" +
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000" +
    "00000000000000000000000000000000000000001c002b00080006008d000000050002000200000008000400" +
    "8d00000010001200090001007665746800000000080025000000000008000500020000000c0006006e6f7175" +
    "65756500c0011a008c0002008800010000000000000000000000000001000000010000000100000001000000" +
    "0000000001000000000000000000000000000000000000000000000000000000000000000000000000000000" +
    "000000000000000000000000000000000000000000000000000000000000000010270000e803000000000000" +
    "0000000000000000000000000100000030010a00080001001000008014000500ffff0000b1ea0400c04e0000" +
    "e8030000f40002000000000040000000dc05000001000000010000000100000001000000ffffffffa00f0000" +
    "e803000000000000803a09008051010003000000580200001000000000000000010000000100000001000000" +
    "60ea000000000000000000000000000000000000000000000000000001000000000000000000000010270000" +
    "e803000001000000000000000000000001000000000000000000000001000000000000000000000000000000" +
    "0000000080ee3600000000000000000001000000000000000000000000000000000000000000000000040000" +
    "00000000ffff0000ffffffff0100000000000000000000000000000014000700000000000000000000000000" +
    "00000000050008000000000024000e0000000000000000000000000000000000000000000000000000000000" +
    "0000000004003e8004004180",
);
/** NLMSG_ERROR -ENODEV (capped, no TLVs) for RTM_GETLINK "tfwnmissing", seq 2. */
const CAPTURED_ENODEV_REPLY = hex(
  "240000000200000102000000fd230000edffffff38000000120001000200000000000000",
);
/** NLMSG_DONE of a dump with IFLA_TARGET_NETNSID 4242: status -EINVAL and an ext ack message. */
const CAPTURED_DONE_EINVAL_EXTACK = hex(
  "3c0000000300020203000000fd230000eaffffff28000100496e76616c696420746172676574206e6574776f" +
    "726b206e616d65737061636520696400",
);
/** RTM_GETNSID for NETNSA_PID 0x23fb, seq 4. */
const CAPTURED_GETNSID_PID_REQUEST = hex(
  "1c0000005a00010004000000000000000000000008000200fb230000",
);
/** RTM_NEWNSID reply: NETNSA_NSID 0. */
const CAPTURED_GETNSID_REPLY = hex(
  "1c0000005800000004000000fd230000000000000800010000000000",
);
/** RTM_GETLINK dump of the namespace with nsid 0 (IFLA_TARGET_NETNSID), seq 6. */
const CAPTURED_DUMP_IN_NS_REQUEST = hex(
  "300000001200010306000000000000000000000000000000000000000000000008001d000800000008002e00" +
    "00000000",
);
/** Its first datagram: lo and the veth peer eth0 (ifindex 2, IFLA_LINK 7 in nsid 1), NLM_F_MULTI. */
const CAPTURED_DUMP_IN_NS_REPLY = hex(
  "540400001000020006000000fd2300000000040301000000080000000000000008002e000000000007000300" +
    "6c6f000008000d00e80300000500100002000000050011000000000005004300010000000800040000000100" +
    "0800320000000000080033000000000008001b000000000008001e000000000008003d000000000008001f00" +
    "0100000008002800ffff0000080029000000010008003a000000010008003f00000001000800400000000100" +
    "08003b00f8ff070008003c00ffff000008004200000000000800200001000000050021000100000008002300" +
    "0000000008002f00000000000800300000000000060044000000000006004500000000000500270000000000" +
    "0a00010000000000000000000a0002000000000000000000cc00170000000000000000000000000000000000" +
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000" +
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000" +
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000" +
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000" +
    "0000000000000000640007000000000000000000000000000000000000000000000000000000000000000000" +
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000" +
    "00000000000000000000000000000000000000000c002b000500020000000000090006006e6f6f7000000000" +
    "c0011a008c000200880001000000000000000000000000000100000001000000010000000100000000000000" +
    "0100000000000000000000000000000000000000000000000100000001000000000000000000000000000000" +
    "0000000000000000000000000000000000000000000000000000000010270000e80300000000000000000000" +
    "00000000000000000100000030010a00080001000000000014000500ffff0000b0ea0400706e0000e8030000" +
    "f400020000000000400000000000010001000000010000000100000001000000ffffffffa00f0000e8030000" +
    "ffffffff803a0900805101000300000058020000100000000000000001000000010000000100000060ea0000" +
    "000000000000000000000000000000000000000000000000ffffffff000000000000000010270000e8030000" +
    "0100000000000000000000000100000000000000000000000100000000000000000000000000000000000000" +
    "80ee360000000000000000000100000000000000000000000000000000000000000000000004000000000000" +
    "ffff0000ffffffff010000000000000000000000000000001400070000000000000000000000000000000000" +
    "050008000000000024000e000000000000000000000000000000000000000000000000000000000000000000" +
    "04003e8004004180780400001000020006000000fd2300000000010002000000431001000000000008002e00" +
    "0000000009000300657468300000000008000d00e80300000500100006000000050011000000000005004300" +
    "0000000008000400dc050000080032004400000008003300ffff000008001b000000000008001e0000000000" +
    "08003d000000000008001f000200000008002800ffff0000080029000000010008003a000000010008003f00" +
    "00000100080040000000010008003b00f8ff070008003c00ffff000008004200000000000800200002000000" +
    "0500210001000000080023000200000008002f00010000000800300001000000060044000000000006004500" +
    "0000000005002700000000000a0001004e578d7b2d6700000a000200ffffffffffff0000cc0017000c000000" +
    "000000000b00000000000000bc03000000000000620300000000000000000000000000000000000000000000" +
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000" +
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000" +
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000" +
    "0000000000000000000000000000000000000000640007000c0000000b000000bc0300006203000000000000" +
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000" +
    "00000000000000000000000000000000000000000000000000000000000000000c002b000500020000000000" +
    "10001200090001007665746800000000080025000100000008000500070000000c0006006e6f717565756500" +
    "c0011a008c000200880001000000000000000000000000000100000001000000010000000100000000000000" +
    "0100000000000000000000000000000000000000000000000000000000000000000000000000000000000000" +
    "0000000000000000000000000000000000000000000000000000000010270000e80300000000000000000000" +
    "00000000000000000100000030010a00080001001000008014000500ffff0000b1ea0400845e0000e8030000" +
    "f40002000000000040000000dc05000001000000010000000100000001000000ffffffffa00f0000e8030000" +
    "00000000803a0900805101000300000058020000100000000000000001000000010000000100000060ea0000" +
    "00000000000000000000000000000000000000000000000001000000000000000000000010270000e8030000" +
    "0100000000000000000000000100000000000000000000000100000000000000000000000000000000000000" +
    "80ee360000000000000000000100000000000000000000000000000000000000000000000004000000000000" +
    "ffff0000ffffffff010000000000000000000000000000001400070000000000000000000000000000000000" +
    "050008000000000024000e000000000000000000000000000000000000000000000000000000000000000000" +
    "04003e8004004180",
);
/** Its second datagram: NLMSG_DONE, status 0. */
const CAPTURED_DUMP_IN_NS_DONE = hex(
  "140000000300020006000000fd23000000000000",
);

/** What the captured veth reply must decode to (checked against `ip -d link` and bpftool). */
const CAPTURED_VETH: Link = {
  index: 7,
  name: "tfwncap0",
  kind: "veth",
  mtu: 1500,
  up: true,
  operState: "up",
  flags: 0x11043, // UP | BROADCAST | RUNNING | MULTICAST | LOWER_UP
  mac: "56:ca:2d:19:ca:ba",
  linkIndex: 2,
  linkNetnsid: 0,
  xdp: { mode: "generic", progId: 141, drvProgId: 0, skbProgId: 141, hwProgId: 0 },
};

function isDecodeError(pattern: RegExp, offset?: number) {
  return (err: unknown) => {
    assert.ok(err instanceof NetlinkDecodeError, `expected NetlinkDecodeError, got ${err}`);
    assert.match(err.message, pattern);
    if (offset !== undefined) assert.equal(err.offset, offset);
    return true;
  };
}

// ---------------------------------------------------------------- attributes

Deno.test("attributes: len counts header and payload, the total is padded to 4 with zeros", () => {
  for (let n = 0; n <= 5; n++) {
    const bytes = encodeAttribute(9, new Uint8Array(n).fill(0xaa));
    assert.equal(bytes.length, Math.ceil((4 + n) / 4) * 4);
    assert.deepEqual([...bytes.subarray(0, 4)], [...le16(4 + n), ...le16(9)]);
    assert.ok(bytes.subarray(4 + n).every((b) => b === 0), "padding is zero");
  }
  assert.deepEqual(stringAttribute(3, "lo"), hex("07000300 6c6f0000"));
  assert.deepEqual(u32Attribute(4, 1500), hex("08000400 dc050000"));
  assert.deepEqual(s32Attribute(37, -1), hex("08002500 ffffffff"));
});

Deno.test("attributes: nested attributes carry NLA_F_NESTED and decode with absolute offsets", () => {
  const nested = nestedAttribute(43, [
    u32Attribute(6, 141),
    encodeAttribute(2, new Uint8Array([2])),
  ]);
  assert.deepEqual(nested, hex("14002b80 08000600 8d000000 05000200 02000000"));
  const [outer] = decodeAttributes(nested, 100);
  assert.equal(outer.type, 43);
  assert.equal(outer.nestedFlag, true);
  assert.equal(outer.offset, 100);
  const inner = decodeNested(outer);
  assert.deepEqual(inner.map((a) => [a.type, a.offset, a.payload.length]), [[6, 104, 4], [
    2,
    112,
    1,
  ]]);
  assert.equal(readU32(inner[0]), 141);
  // Old-style nests (IFLA_LINKINFO, IFLA_XDP from the kernel) come without the flag.
  assert.equal(decodeAttributes(hex("0c001200 08000100 61626300"))[0].nestedFlag, false);
});

Deno.test("attributes: a missing pad after the last attribute is accepted", () => {
  const attrs = decodeAttributes(hex("05000200 02"));
  assert.equal(attrs.length, 1);
  assert.deepEqual([...attrs[0].payload], [2]);
});

Deno.test("attributes: bad lengths and short payloads are NetlinkDecodeErrors, not crashes", () => {
  assert.throws(
    () => decodeAttributes(hex("02000100"), 40),
    isDecodeError(/shorter than its header/, 40),
  );
  assert.throws(
    () => decodeAttributes(hex("0c000100 00000000")),
    isDecodeError(/runs past the end/, 0),
  );
  assert.throws(
    () => decodeAttributes(hex("08000100 00000000 0102")),
    isDecodeError(/2 trailing byte/, 8),
  );
  const [short] = decodeAttributes(hex("06000400 dc05"));
  assert.throws(
    () => readU32(short, "IFLA_MTU"),
    isDecodeError(/IFLA_MTU attribute \(type 4\) has 2/),
  );
  assert.throws(() => readS32(short), NetlinkDecodeError);
  assert.equal(readString(decodeAttributes(hex("06000300 6c6f"))[0]), "lo", "no NUL needed");
  assert.equal(
    attributesByType(decodeAttributes(hex("05000100 01000000 05000100 02000000"))).get(1)
      ?.payload[0],
    2,
  );
});

// ---------------------------------------------------------------- messages

Deno.test("messages: header layout and padding of an encoded request", () => {
  const bytes = encodeMessage(
    { type: 18, flags: 0x301, seq: 0x01020304 },
    new Uint8Array([1, 2, 3]),
  );
  assert.deepEqual(bytes, hex("13000000 1200 0103 04030201 00000000 010203 00"));
});

Deno.test("messages: a datagram splits into its messages", () => {
  const datagram = new Uint8Array([
    ...msg(16, 2, 5, 9, [1, 2, 3, 4]),
    ...msg(3, 2, 5, 9, le32(0)),
  ]);
  const msgs = decodeMessages(datagram);
  assert.deepEqual(
    msgs.map((m) => [m.header.type, m.header.seq, m.header.pid, m.offset, m.payload.length]),
    [
      [16, 5, 9, 0, 4],
      [3, 5, 9, 20, 4],
    ],
  );
  assert.deepEqual(decodeMessages(new Uint8Array(0)), []);
});

Deno.test("messages: truncated datagrams and impossible lengths are NetlinkDecodeErrors", () => {
  assert.throws(() => decodeMessages(new Uint8Array(10)), isDecodeError(/10 byte\(s\) left/, 0));
  assert.throws(
    () => decodeMessages(new Uint8Array(msg(16, 0, 0, 0, []).map((b, i) => i === 0 ? 8 : b))),
    isDecodeError(/shorter than its header/),
  );
  for (let cut = 1; cut < CAPTURED_GETLINK_VETH_REPLY.length; cut += 37) {
    assert.throws(
      () => decodeMessages(CAPTURED_GETLINK_VETH_REPLY.subarray(0, cut)),
      NetlinkDecodeError,
    );
  }
});

Deno.test("NLMSG_ERROR: captured ENODEV (capped, no TLVs) names the request it answers", () => {
  const [m] = decodeMessages(CAPTURED_ENODEV_REPLY);
  assert.equal(m.header.flags, 0x100, "NLM_F_CAPPED");
  const reply = decodeErrorMessage(m);
  assert.equal(reply.errno, 19);
  assert.deepEqual(reply.request, { length: 0x38, type: 18, flags: 1, seq: 2, pid: 0 });
  assert.equal(reply.extAckMessage, undefined);
});

Deno.test("NLMSG_ERROR: extended ack TLVs after a fully echoed request, and after a capped ack", () => {
  const request = msg(18, 1, 3, 0, [0, 0, 0, 0, 0, 0, 0, 0]);
  const tlvs = [...attr(1, [...new TextEncoder().encode("bad attr"), 0]), ...attr(2, le32(20))];
  const uncapped = new Uint8Array(msg(2, 0x200, 3, 7, [...le32(-22), ...request, ...tlvs]));
  const reply = decodeErrorMessage(decodeMessages(uncapped)[0]);
  assert.equal(reply.errno, 22);
  assert.equal(reply.request?.length, 24);
  assert.equal(reply.extAckMessage, "bad attr");
  assert.equal(reply.extAckOffset, 20);

  const warning = attr(1, [...new TextEncoder().encode("deprecated"), 0]);
  const ack = new Uint8Array(
    msg(2, 0x300, 3, 7, [...le32(0), ...request.slice(0, 16), ...warning]),
  );
  assert.deepEqual(decodeErrorMessage(decodeMessages(ack)[0]).extAckMessage, "deprecated");
  assert.equal(decodeErrorMessage(decodeMessages(ack)[0]).errno, 0);
});

Deno.test("NLMSG_ERROR: a body too short for what it announces is a NetlinkDecodeError", () => {
  const short = new Uint8Array(msg(2, 0, 1, 1, le32(-1)));
  assert.throws(
    () => decodeErrorMessage(decodeMessages(short)[0]),
    isDecodeError(/expected at least 20/),
  );
  const claims = msg(18, 1, 3, 0, []).map((b, i) => i === 0 ? 200 : b); // echoed len 200, but 16 present
  const lying = new Uint8Array(msg(2, 0x200, 1, 1, [...le32(-22), ...claims]));
  assert.throws(
    () => decodeErrorMessage(decodeMessages(lying)[0]),
    isDecodeError(/echoes a 200-byte request/),
  );
  assert.throws(
    () => decodeErrorMessage(decodeMessages(CAPTURED_DUMP_IN_NS_DONE)[0]),
    NetlinkDecodeError,
  );
});

Deno.test("NLMSG_DONE: captured status -EINVAL with the kernel's message, status 0, and no body", () => {
  const [done] = decodeMessages(CAPTURED_DONE_EINVAL_EXTACK);
  assert.equal(done.header.flags, 0x202, "NLM_F_MULTI | NLM_F_ACK_TLVS");
  assert.deepEqual(decodeDoneMessage(done), {
    errno: 22,
    extAckMessage: "Invalid target network namespace id",
    extAckOffset: undefined,
  });
  assert.deepEqual(decodeDoneMessage(decodeMessages(CAPTURED_DUMP_IN_NS_DONE)[0]), { errno: 0 });
  assert.deepEqual(decodeDoneMessage(decodeMessages(new Uint8Array(msg(3, 2, 1, 1, [])))[0]), {
    errno: 0,
  });
});

// ---------------------------------------------------------------- links

Deno.test("RTM_GETLINK requests: by name (as captured), by index, dump in another netns", () => {
  assert.deepEqual(
    encodeGetLinkRequest({ seq: 1, target: { name: "tfwncap0" } }),
    CAPTURED_GETLINK_VETH_REQUEST,
  );
  assert.deepEqual(
    encodeGetLinkRequest({ seq: 6, target: { dump: true }, targetNetnsid: 0 }),
    CAPTURED_DUMP_IN_NS_REQUEST,
  );
  const ifinfo = [0, 0, 0, 0, ...le32(7), ...le32(0), ...le32(0)];
  assert.deepEqual(
    encodeGetLinkRequest({ seq: 9, target: { index: 7 } }),
    new Uint8Array(msg(18, 1, 9, 0, [...ifinfo, ...attr(29, le32(8))])),
  );
});

Deno.test("RTM_GETLINK requests: long names go in IFLA_ALT_IFNAME; impossible names and indexes throw", () => {
  const long = "tfwn-a-very-long-altname";
  const [m] = decodeMessages(encodeGetLinkRequest({ seq: 1, target: { name: long } }));
  const attrs = attributesByType(decodeAttributes(m.payload.subarray(16)));
  assert.equal(readString(attrs.get(53)!), long);
  assert.equal(attrs.has(3), false);
  for (const name of ["", "a\0b", "x".repeat(128)]) {
    assert.throws(() => encodeGetLinkRequest({ seq: 1, target: { name } }), RangeError);
  }
  for (const index of [0, -1, 1.5, 2 ** 31]) {
    assert.throws(() => encodeGetLinkRequest({ seq: 1, target: { index } }), RangeError);
  }
});

Deno.test("ifinfomsg: layout round trip and truncation", () => {
  const fields = { family: 0, type: 1, index: 7, flags: 0x11043, change: 0xffffffff };
  const bytes = encodeIfInfoMsg(fields);
  assert.deepEqual(bytes, hex("00000100 07000000 43100100 ffffffff"));
  assert.deepEqual(decodeIfInfoMsg(bytes), fields);
  assert.throws(
    () => decodeIfInfoMsg(bytes.subarray(0, 12), 16),
    isDecodeError(/ifinfomsg needs 16/, 16),
  );
});

Deno.test("RTM_NEWLINK: the captured host end of a veth with a generic XDP program", () => {
  const [m] = decodeMessages(CAPTURED_GETLINK_VETH_REPLY);
  assert.deepEqual(decodeLinkMessage(m), CAPTURED_VETH);
});

Deno.test("RTM_NEWLINK: a captured multipart dump of another namespace (lo, and the veth peer)", () => {
  const msgs = decodeMessages(CAPTURED_DUMP_IN_NS_REPLY);
  assert.ok(
    msgs.every((m) => m.header.type === 16 && m.header.flags === 2),
    "RTM_NEWLINK, NLM_F_MULTI",
  );
  assert.deepEqual(msgs.map(decodeLinkMessage), [
    {
      index: 1,
      name: "lo",
      mtu: 65536,
      up: false,
      operState: "down",
      flags: 0x8, // LOOPBACK, not up
      mac: "00:00:00:00:00:00",
      xdp: { mode: "none", progId: 0, drvProgId: 0, skbProgId: 0, hwProgId: 0 },
    },
    {
      index: 2,
      name: "eth0",
      kind: "veth",
      mtu: 1500,
      up: true,
      operState: "up",
      flags: 0x11043,
      mac: "4e:57:8d:7b:2d:67",
      linkIndex: 7,
      linkNetnsid: 1, // the host namespace, numbered from the host's own point of view
      xdp: { mode: "none", progId: 0, drvProgId: 0, skbProgId: 0, hwProgId: 0 },
    },
  ]);
});

/** A hand-built RTM_NEWLINK: ifinfomsg(index 5, flags) + attributes. */
function linkMessage(attrs: number[], flags = 0x1003): Uint8Array {
  return new Uint8Array(
    msg(16, 0, 1, 1, [0, 0, ...le16(1), ...le32(5), ...le32(flags), ...le32(0), ...attrs]),
  );
}
const NAME_ATTR = attr(3, [...new TextEncoder().encode("tfwbr0p1"), 0]);

Deno.test("RTM_NEWLINK: a bridge port (IFLA_MASTER, slave kind) and multi-mode XDP", () => {
  const linkinfo = attr(18, [
    ...attr(1, [...new TextEncoder().encode("veth"), 0]),
    ...attr(4, [...new TextEncoder().encode("bridge"), 0]),
  ]);
  const xdp = attr(43 | 0x8000, [...attr(2, [4]), ...attr(5, le32(10)), ...attr(7, le32(11))]);
  const link = decodeLinkMessage(
    decodeMessages(linkMessage([
      ...NAME_ATTR,
      ...attr(4, le32(9000)),
      ...attr(16, [2]),
      ...attr(10, le32(3)),
      ...attr(1, [0x02, 0, 0, 0, 0, 0xff]),
      ...linkinfo,
      ...xdp,
    ]))[0],
  );
  assert.deepEqual(link, {
    index: 5,
    name: "tfwbr0p1",
    kind: "veth",
    slaveKind: "bridge",
    mtu: 9000,
    up: true,
    operState: "down",
    flags: 0x1003,
    mac: "02:00:00:00:00:ff",
    masterIndex: 3,
    xdp: { mode: "multi", progId: 0, drvProgId: 10, skbProgId: 0, hwProgId: 11 },
  });
  const native = attr(43, [...attr(2, [1]), ...attr(4, le32(12)), ...attr(5, le32(12))]);
  assert.deepEqual(
    decodeLinkMessage(decodeMessages(linkMessage([...NAME_ATTR, ...native]))[0]).xdp,
    {
      mode: "native",
      progId: 12,
      drvProgId: 12,
      skbProgId: 0,
      hwProgId: 0,
    },
  );
});

Deno.test("RTM_NEWLINK: malformed links are NetlinkDecodeErrors naming the problem", () => {
  const decode = (bytes: Uint8Array) => decodeLinkMessage(decodeMessages(bytes)[0]);
  assert.throws(
    () => decode(linkMessage([...attr(4, le32(1500))])),
    isDecodeError(/no IFLA_IFNAME/),
  );
  assert.throws(
    () => decode(linkMessage([...NAME_ATTR, ...attr(43, attr(2, [9]))])),
    isDecodeError(/unknown IFLA_XDP_ATTACHED value 9/),
  );
  assert.throws(
    () => decode(linkMessage([...NAME_ATTR, ...attr(4, [1, 2])])),
    isDecodeError(/IFLA_MTU/),
  );
  assert.throws(
    () => decode(linkMessage([...NAME_ATTR, ...attr(5, [1])])),
    isDecodeError(/IFLA_LINK /),
  );
  assert.throws(
    () => decode(new Uint8Array(msg(16, 0, 1, 1, [0, 0, 1, 0]))),
    isDecodeError(/ifinfomsg/),
  );
  assert.throws(() => decode(CAPTURED_GETNSID_REPLY), isDecodeError(/not RTM_NEWLINK/));
});

// ---------------------------------------------------------------- nsid

Deno.test("RTM_GETNSID: requests by pid (as captured) and by fd; replies with and without an nsid", () => {
  assert.deepEqual(encodeGetNsidRequest(4, { pid: 0x23fb }), CAPTURED_GETNSID_PID_REQUEST);
  assert.deepEqual(
    encodeGetNsidRequest(8, { fd: 5 }),
    new Uint8Array(msg(90, 1, 8, 0, [0, 0, 0, 0, ...attr(3, le32(5))])),
  );
  assert.throws(() => encodeGetNsidRequest(1, { pid: -1 }), RangeError);
  assert.deepEqual(decodeNsidMessage(decodeMessages(CAPTURED_GETNSID_REPLY)[0]), {
    nsid: 0,
    currentNsid: undefined,
  });
  const none = new Uint8Array(
    msg(88, 0, 1, 1, [0, 0, 0, 0, ...attr(1, le32(-1)), ...attr(5, le32(3))]),
  );
  assert.deepEqual(decodeNsidMessage(decodeMessages(none)[0]), { nsid: -1, currentNsid: 3 });
  const empty = new Uint8Array(msg(88, 0, 1, 1, [0, 0, 0, 0]));
  assert.throws(
    () => decodeNsidMessage(decodeMessages(empty)[0]),
    isDecodeError(/without NETNSA_NSID/),
  );
  const short = new Uint8Array(msg(88, 0, 1, 1, []));
  assert.throws(
    () => decodeNsidMessage(decodeMessages(short)[0]),
    isDecodeError(/too short for rtgenmsg/),
  );
});

// ---------------------------------------------------------------- garbage

/** Decodes every message of a datagram the way the client would. */
function decodeEverything(datagram: Uint8Array): void {
  for (const m of decodeMessages(datagram)) {
    if (m.header.type === 16 || m.header.type === 17) decodeLinkMessage(m);
    else if (m.header.type === 2) decodeErrorMessage(m);
    else if (m.header.type === 3) decodeDoneMessage(m);
    else if (m.header.type === 88) decodeNsidMessage(m);
  }
}

Deno.test("garbage: truncated and corrupted kernel replies fail only with NetlinkDecodeError", () => {
  const captures = [
    CAPTURED_GETLINK_VETH_REPLY,
    CAPTURED_DUMP_IN_NS_REPLY,
    CAPTURED_ENODEV_REPLY,
    CAPTURED_DONE_EINVAL_EXTACK,
    CAPTURED_GETNSID_REPLY,
  ];
  let failures = 0;
  let successes = 0;
  const attempt = (bytes: Uint8Array) => {
    try {
      decodeEverything(bytes);
      successes++;
    } catch (err) {
      if (!(err instanceof NetlinkDecodeError)) throw err;
      failures++;
    }
  };
  // Every truncation of the veth reply, with nlmsg_len fixed up so attribute parsing sees the cut.
  for (let cut = 16; cut < CAPTURED_GETLINK_VETH_REPLY.length; cut++) {
    const bytes = CAPTURED_GETLINK_VETH_REPLY.slice(0, cut);
    new DataView(bytes.buffer).setUint32(0, cut, true);
    attempt(bytes);
  }
  const random = mulberry32(0x7f1f); // seeded, so failures reproduce
  for (let i = 0; i < 3000; i++) {
    const bytes = captures[i % captures.length].slice();
    const flips = 1 + Math.floor(random() * 8);
    for (let f = 0; f < flips; f++) {
      bytes[Math.floor(random() * bytes.length)] = Math.floor(random() * 256);
    }
    attempt(bytes);
  }
  for (let i = 0; i < 500; i++) {
    attempt(new Uint8Array(Math.floor(random() * 64)).map(() => Math.floor(random() * 256)));
  }
  assert.ok(failures > 100 && successes > 100, `both outcomes seen (${failures} / ${successes})`);
});

// ---------------------------------------------------------------- the client

/** Rewrites seq and pid of every message in a datagram (so captures answer any request). */
function readdressed(datagram: Uint8Array, seq: number, pid: number): Uint8Array {
  const copy = datagram.slice();
  const view = new DataView(copy.buffer);
  for (const m of decodeMessages(copy)) {
    view.setUint32(m.offset + 8, seq, true);
    view.setUint32(m.offset + 12, pid, true);
  }
  return copy;
}

/** Sets NLM_F_DUMP_INTR on every message of a datagram. */
function interrupted(datagram: Uint8Array): Uint8Array {
  const copy = datagram.slice();
  const view = new DataView(copy.buffer);
  for (const m of decodeMessages(copy)) view.setUint16(m.offset + 6, m.header.flags | 0x10, true);
  return copy;
}

/** A scripted kernel: each request is answered with datagrams readdressed to it. */
class FakeKernel implements NetlinkTransport {
  readonly portId = CAPTURE_PORT_ID;
  readonly requests: Uint8Array[] = [];
  closed = false;
  #queue: Uint8Array[] = [];
  readonly #answer: (request: NlMsgHeader, count: number) => Uint8Array[];

  constructor(answer: (request: NlMsgHeader, count: number) => Uint8Array[]) {
    this.#answer = answer;
  }

  send(datagram: Uint8Array): void {
    this.requests.push(datagram.slice());
    const { header } = decodeMessages(datagram)[0];
    const answers = this.#answer(header, this.requests.length);
    this.#queue.push(...answers.map((d) => readdressed(d, header.seq, this.portId)));
  }

  receive(): Uint8Array {
    const next = this.#queue.shift();
    if (!next) throw new Error("the client waited for a reply that was never sent");
    return next;
  }

  describeError(errno: number): string {
    return `description of ${errno}`;
  }

  close(): void {
    this.closed = true;
  }
}

Deno.test("client: getLink sends RTM_GETLINK by name and decodes the reply; ENODEV is null", () => {
  const kernel = new FakeKernel((
    _req,
    n,
  ) => [n === 1 ? CAPTURED_GETLINK_VETH_REPLY : CAPTURED_ENODEV_REPLY]);
  const client = new RtnetlinkClient(kernel);
  assert.deepEqual(client.getLink("tfwncap0"), CAPTURED_VETH);
  const [request] = decodeMessages(kernel.requests[0]);
  assert.equal(request.header.type, 18);
  assert.equal(request.header.flags, 1);
  assert.equal(
    readString(attributesByType(decodeAttributes(request.payload.subarray(16))).get(3)!),
    "tfwncap0",
  );
  assert.equal(client.getLink("tfwnmissing"), null);
  client.close();
  assert.equal(kernel.closed, true);
});

Deno.test("client: other kernel errors throw NetlinkError with op, errno, code and ext ack", () => {
  const eperm = new Uint8Array(msg(2, 0x300, 0, 0, [
    ...le32(-1),
    ...msg(18, 1, 0, 0, []),
    ...attr(1, [...new TextEncoder().encode("not allowed here"), 0]),
  ]));
  const client = new RtnetlinkClient(new FakeKernel(() => [eperm]));
  assert.throws(() => client.getLink(3), (err: unknown) => {
    assert.ok(err instanceof NetlinkError);
    assert.equal(err.op, "RTM_GETLINK");
    assert.equal(err.errno, 1);
    assert.equal(err.code, "EPERM");
    assert.equal(err.extAckMessage, "not allowed here");
    assert.equal(
      err.message,
      "netlink RTM_GETLINK failed: description of 1 (EPERM): not allowed here",
    );
    return true;
  });
});

Deno.test("client: listLinks collects a multipart dump across datagrams until NLMSG_DONE", () => {
  const kernel = new FakeKernel(() => [CAPTURED_DUMP_IN_NS_REPLY, CAPTURED_DUMP_IN_NS_DONE]);
  const links = new RtnetlinkClient(kernel).listLinks({ targetNetnsid: 0 });
  assert.deepEqual(links.map((l) => [l.index, l.name, l.linkIndex]), [[1, "lo", undefined], [
    2,
    "eth0",
    7,
  ]]);
  const [request] = decodeMessages(kernel.requests[0]);
  assert.equal(request.header.flags, 0x301, "NLM_F_REQUEST | NLM_F_DUMP");
  assert.equal(
    readS32(attributesByType(decodeAttributes(request.payload.subarray(16))).get(46)!),
    0,
  );
});

Deno.test("client: replies to another sequence number or port are skipped", () => {
  let seq = 0;
  const replies: Array<() => Uint8Array> = [
    () => readdressed(CAPTURED_ENODEV_REPLY, seq - 1, CAPTURE_PORT_ID), // an earlier request's
    () => readdressed(CAPTURED_ENODEV_REPLY, seq, CAPTURE_PORT_ID + 1), // another socket's
    () => readdressed(CAPTURED_GETLINK_VETH_REPLY, seq, CAPTURE_PORT_ID),
  ];
  const transport: NetlinkTransport = {
    portId: CAPTURE_PORT_ID,
    send: (d) => {
      seq = decodeMessages(d)[0].header.seq;
    },
    receive: () => replies.shift()!(),
    close: () => {},
  };
  assert.deepEqual(new RtnetlinkClient(transport).getLink("tfwncap0"), CAPTURED_VETH);
  assert.equal(replies.length, 0);
});

Deno.test("client: a dump that fails in NLMSG_DONE throws the kernel's message", () => {
  const client = new RtnetlinkClient(new FakeKernel(() => [CAPTURED_DONE_EINVAL_EXTACK]));
  assert.throws(() => client.listLinks({ targetNetnsid: 4242 }), (err: unknown) => {
    assert.ok(err instanceof NetlinkError);
    assert.equal(err.code, "EINVAL");
    assert.equal(err.extAckMessage, "Invalid target network namespace id");
    return true;
  });
});

Deno.test("client: an interrupted dump (NLM_F_DUMP_INTR) is retried, then given up on", () => {
  const flaky = new FakeKernel((_req, n) =>
    n === 1
      ? [interrupted(CAPTURED_DUMP_IN_NS_REPLY), interrupted(CAPTURED_DUMP_IN_NS_DONE)]
      : [CAPTURED_DUMP_IN_NS_REPLY, CAPTURED_DUMP_IN_NS_DONE]
  );
  assert.equal(new RtnetlinkClient(flaky).listLinks().length, 2);
  assert.equal(flaky.requests.length, 2);
  const seqs = flaky.requests.map((r) => decodeMessages(r)[0].header.seq);
  assert.notEqual(seqs[0], seqs[1], "each attempt has its own sequence number");

  const broken = new FakeKernel(
    () => [interrupted(CAPTURED_DUMP_IN_NS_REPLY), CAPTURED_DUMP_IN_NS_DONE],
  );
  assert.throws(() => new RtnetlinkClient(broken).listLinks(), (err: unknown) => {
    assert.ok(err instanceof NetlinkError);
    assert.equal(err.code, "EINTR");
    return true;
  });
  assert.equal(broken.requests.length, 5);
});

Deno.test("client: getNsidByPid / getNsidByFd send NETNSA_PID / NETNSA_FD and return the nsid", () => {
  const kernel = new FakeKernel(() => [CAPTURED_GETNSID_REPLY]);
  const client = new RtnetlinkClient(kernel);
  assert.equal(client.getNsidByPid(1234), 0);
  assert.equal(client.getNsidByFd(7), 0);
  const sent = kernel.requests.map((r) => {
    const [m] = decodeMessages(r);
    const [a] = decodeAttributes(m.payload.subarray(4));
    return [m.header.type, a.type, readU32(a)];
  });
  assert.deepEqual(sent, [[90, 2, 1234], [90, 3, 7]]);
});

Deno.test("client: a garbled reply surfaces as a NetlinkDecodeError", () => {
  const garbled = CAPTURED_GETLINK_VETH_REPLY.slice(0, 300);
  const client = new RtnetlinkClient(new FakeKernel(() => [garbled]));
  assert.throws(() => client.getLink("tfwncap0"), NetlinkDecodeError);
});
