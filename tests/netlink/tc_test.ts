/** RTM_GETTFILTER requests and RTM_NEWTFILTER decoding (lib/netlink/tc.ts), on hand-built bytes. */
import assert from "node:assert/strict";
import {
  encodeAttribute,
  nestedAttribute,
  stringAttribute,
  u32Attribute,
} from "../../lib/netlink/attributes.ts";
import { decodeMessages, encodeMessage } from "../../lib/netlink/message.ts";
import {
  decodeFilterMessage,
  encodeGetFilterDump,
  RTM_GETTFILTER,
  RTM_NEWTFILTER,
  TC_PARENT_CLSACT_EGRESS,
  TCA_BPF_ID,
  TCA_BPF_NAME,
  TCA_KIND,
  TCA_OPTIONS,
} from "../../lib/netlink/tc.ts";

function tcmsg(ifindex: number, handle: number, parent: number, info: number): Uint8Array {
  const b = new Uint8Array(20);
  const v = new DataView(b.buffer);
  v.setInt32(4, ifindex, true);
  v.setUint32(8, handle, true);
  v.setUint32(12, parent, true);
  v.setUint32(16, info, true);
  return b;
}

Deno.test("netlink tc: a filter dump request names the interface and the parent", () => {
  const [msg] = decodeMessages(encodeGetFilterDump(7, 12, TC_PARENT_CLSACT_EGRESS));
  assert.equal(msg.header.type, RTM_GETTFILTER);
  assert.equal(msg.header.flags, 0x301); // NLM_F_REQUEST | NLM_F_DUMP
  assert.equal(msg.header.seq, 7);
  assert.deepEqual(msg.payload, tcmsg(12, 0, 0xfffffff3, 0));
});

Deno.test("netlink tc: a bpf filter decodes with its priority, name and program id", () => {
  const body = new Uint8Array([
    ...tcmsg(12, 0x7466, TC_PARENT_CLSACT_EGRESS, (1 << 16) | 0x0300),
    ...stringAttribute(TCA_KIND, "bpf"),
    ...nestedAttribute(TCA_OPTIONS, [
      stringAttribute(TCA_BPF_NAME, "tinyfw_tc_learn:[42]"),
      u32Attribute(TCA_BPF_ID, 42),
      encodeAttribute(8, new Uint8Array([1, 0, 0, 0])), // TCA_BPF_FLAGS
    ]),
  ]);
  const [msg] = decodeMessages(encodeMessage({ type: RTM_NEWTFILTER, flags: 2, seq: 1 }, body));
  assert.deepEqual(decodeFilterMessage(msg), {
    parent: TC_PARENT_CLSACT_EGRESS,
    handle: 0x7466,
    priority: 1,
    protocol: 0x0300,
    kind: "bpf",
    bpfName: "tinyfw_tc_learn:[42]",
    bpfId: 42,
  });
  // The entry for a priority's classifier itself: no handle, no options.
  const head = new Uint8Array([
    ...tcmsg(12, 0, TC_PARENT_CLSACT_EGRESS, (49152 << 16) | 0x0300),
    ...stringAttribute(TCA_KIND, "u32"),
  ]);
  const [m2] = decodeMessages(encodeMessage({ type: RTM_NEWTFILTER, flags: 2, seq: 1 }, head));
  assert.deepEqual(decodeFilterMessage(m2), {
    parent: TC_PARENT_CLSACT_EGRESS,
    handle: 0,
    priority: 49152,
    protocol: 0x0300,
    kind: "u32",
  });
});
