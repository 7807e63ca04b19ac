/**
 * End to end, stateful replies on a host interface: real traffic between two
 * network namespaces, the data path set up directly (Datapath, PolicySlots,
 * tc.ts, events.ts), as the agent does for `--iface`: the XDP program on the
 * server's end of the veth (ingress) and the tc learner on its egress, with
 * `defaultAction: deny` and `allow ingress tcp 8080`.
 *
 * Shows: the allowed service answers (IPv4 and IPv6); the server's own
 * outgoing TCP connect, UDP exchange and ping get their replies (both
 * families); unsolicited traffic is dropped; spoofed "replies" (a UDP
 * datagram from the wrong port, a TCP SYN-ACK to a connection that never
 * existed) are dropped; a drop sample with the right 5-tuple arrives through
 * EventReader; audit mode passes what it would drop, and counts it.
 */
import { webOnlyPolicy } from "../helpers/gen.ts";
import assert from "node:assert/strict";
import { Datapath, sumPerCpu, u32Key, xdpAttach, xdpDetach } from "../../lib/datapath/object.ts";
import { PolicySlots } from "../../lib/datapath/policy_slots.ts";
import { attachTcEgress, detachTcEgress, tcEgressProgram } from "../../lib/datapath/tc.ts";
import { type DropEvent, EventReader, samplesLost } from "../../lib/datapath/events.ts";
import { listFlows } from "../../lib/datapath/flows.ts";
import { DIR_INGRESS, STAT_AUDIT, STAT_REPLY } from "../../lib/abi/layout.ts";
import { compilePolicy } from "../../lib/policy/compile/compile.ts";
import type { Policy } from "../../lib/policy/model/types.ts";
import type { Netns } from "../helpers/netns.ts";
import {
  CLIENT4,
  CLIENT6,
  NETPEER,
  ping,
  reach,
  SERVER4,
  SERVER6,
  startServer,
  withTopology,
  xdpOf,
} from "../helpers/topology.ts";

const POLICY: Policy = webOnlyPolicy();

/** `netpeer.ts ARGS` inside `ns`, as a command line. */
function peer(...args: string[]): string[] {
  return [Deno.execPath(), "run", "--allow-all", "--quiet", NETPEER, ...args];
}

/** Reads a spawned process's stdout until it exits. */
async function output(child: Deno.ChildProcess): Promise<string> {
  let text = "";
  const decoder = new TextDecoder();
  for await (const chunk of child.stdout) text += decoder.decode(chunk);
  return text;
}

/**
 * The UDP spoofing check for one family: what the server's socket received.
 * The client answers on `port`; the server uses `lport`.
 */
async function udpSpoofCheck(
  server: Netns,
  client: Netns,
  family: 4 | 6,
  port: number,
  lport: number,
): Promise<string> {
  const [serverAddr, clientAddr] = family === 4 ? [SERVER4, CLIENT4] : [SERVER6, CLIENT6];
  const spoofer = await client.spawn(
    peer("spoof-client", String(family), serverAddr, String(port), String(lport)),
  );
  const reader = spoofer.child.stdout.getReader();
  const { value } = await reader.read();
  reader.releaseLock();
  assert.match(new TextDecoder().decode(value), /ready/);
  const r = await server.exec(
    peer("spoof-server", String(family), clientAddr, String(port), String(lport)),
    { allowFailure: true },
  );
  const sent = await output(spoofer.child);
  await spoofer.kill();
  assert.match(sent, /sent/, `the client did not send its datagrams: ${sent}`);
  return r.stdout + r.stderr;
}

function stat(dp: Datapath, idx: number): bigint {
  return sumPerCpu(dp.maps.stats.lookupPerCpu(u32Key(idx)) ?? [])[0] ?? 0n;
}

async function waitFor<T>(what: string, f: () => T | undefined, ms = 3000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

Deno.test("e2e stateful: default deny + allow tcp 8080 on a host interface, with the tc learner", async () => {
  await withTopology(async ({ server, client, iface }) => {
    await startServer(server, { tcp: [80, 8080], udp: [5353] });
    await startServer(client, { tcp: [9000], udp: [5353] });

    // Without tinyfw, the services answer: the test can see a difference.
    assert.equal(await reach(client, "tcp", SERVER4, 80), true, "port 80 unreachable before");

    const dp = Datapath.load();
    const slots = new PolicySlots(dp);
    const installed = slots.install(compilePolicy(POLICY));
    slots.configureAttachment(1, installed.slot, DIR_INGRESS);
    const xdp = dp.instance(1);
    const learner = dp.tcLearner();
    const events: DropEvent[] = [];
    const reader = EventReader.open(dp.maps.events, (e) => events.push(e));
    const loop = reader.start();
    const ifindex = server.ifindex(iface);
    const defaultCounter = installed.counterBase + 2 * 1 + DIR_INGRESS;
    let tc: ReturnType<typeof attachTcEgress> | null = null;
    try {
      server.enter(() => {
        xdpAttach(ifindex, xdp.fd, { mode: "generic" });
        tc = attachTcEgress(ifindex, learner.fd);
      });
      assert.equal(xdpOf(server, iface).mode, "generic");
      assert.equal(server.enter(() => tcEgressProgram(ifindex))?.tinyfw, true);

      // The allowed service answers.
      assert.equal(await reach(client, "tcp", SERVER4, 8080), true, "TCP 8080 over IPv4");
      assert.equal(await reach(client, "tcp", SERVER6, 8080), true, "TCP 8080 over IPv6");

      // The server's own exchanges get their replies.
      const replies0 = stat(dp, STAT_REPLY);
      assert.equal(await reach(server, "tcp", CLIENT4, 9000), true, "outgoing TCP, IPv4");
      assert.equal(await reach(server, "tcp", CLIENT6, 9000), true, "outgoing TCP, IPv6");
      assert.equal(await reach(server, "udp", CLIENT4, 5353), true, "outgoing UDP, IPv4");
      assert.equal(await reach(server, "udp", CLIENT6, 5353), true, "outgoing UDP, IPv6");
      assert.equal(await ping(server, CLIENT4), true, "outgoing ping, IPv4");
      assert.equal(await ping(server, CLIENT6), true, "outgoing ping, IPv6");
      const replies = stat(dp, STAT_REPLY) - replies0;
      assert.ok(replies >= 6n, `only ${replies} packets passed as replies`);
      assert.ok(listFlows(dp.maps.flows).length >= 6, "the learner learned nothing");

      // Unsolicited traffic is dropped (the services listen: without tinyfw they answer).
      const drops0 = slots.readCounter(defaultCounter)[0];
      assert.equal(await reach(client, "tcp", SERVER4, 80), false, "TCP 80, IPv4");
      assert.equal(await reach(client, "tcp", SERVER6, 80), false, "TCP 80, IPv6");
      assert.equal(await reach(client, "udp", SERVER4, 5353), false, "UDP 5353, IPv4");
      assert.equal(await reach(client, "udp", SERVER6, 5353), false, "UDP 5353, IPv6");
      assert.equal(await ping(client, SERVER4), false, "ping, IPv4");
      assert.equal(await ping(client, SERVER6), false, "ping, IPv6");
      assert.ok(slots.readCounter(defaultCounter)[0] - drops0 >= 6n);

      // Spoofed UDP "replies": only the datagram that answers the flow arrives.
      for (const [family, port, lport] of [[4, 6000, 41000], [6, 6100, 41100]] as const) {
        const got = await udpSpoofCheck(server, client, family, port, lport);
        assert.match(got, /exchanged pong/, `IPv${family}: ${got}`);
        assert.match(got, /got legit/, `IPv${family}: the true reply did not arrive: ${got}`);
        assert.doesNotMatch(got, /spoof/, `IPv${family}: a spoofed reply arrived: ${got}`);
      }

      // A TCP SYN-ACK to a connection that never existed: dropped, and sampled.
      await new Promise((r) => setTimeout(r, 1100)); // a fresh sample window
      const lost0 = samplesLost(dp);
      const before = slots.readCounter(defaultCounter)[0];
      for (
        const [family, src, dst] of [[4, CLIENT4, SERVER4], [6, CLIENT6, SERVER6]] as const
      ) {
        await client.exec(peer("raw-tcp", String(family), src, dst, "9000", "45678", "18"));
      }
      assert.equal(slots.readCounter(defaultCounter)[0] - before, 2n, "SYN-ACKs not dropped");
      for (const dst of [SERVER4, SERVER6]) {
        const e = await waitFor(
          `the drop sample of the SYN-ACK to ${dst}`,
          () =>
            events.find((e) =>
              e.kind === "drop" && e.protocol === "tcp" && e.dst === dst && e.dport === 45678
            ),
        );
        assert.deepEqual(
          {
            attachId: e.attachId,
            counter: e.counter,
            direction: e.direction,
            src: e.src,
            sport: e.sport,
          },
          {
            attachId: 1,
            counter: defaultCounter,
            direction: "ingress",
            src: dst === SERVER4 ? CLIENT4 : CLIENT6,
            sport: 9000,
          },
        );
      }
      assert.equal(samplesLost(dp), lost0, "samples were lost");

      // Audit mode: what would be dropped passes, and is counted.
      await new Promise((r) => setTimeout(r, 1100));
      slots.setAudit(true);
      const audited0 = stat(dp, STAT_AUDIT);
      const counted0 = slots.readCounter(defaultCounter)[0];
      assert.equal(await reach(client, "tcp", SERVER4, 80), true, "audit: TCP 80, IPv4");
      assert.equal(await reach(client, "udp", SERVER6, 5353), true, "audit: UDP 5353, IPv6");
      const audited = stat(dp, STAT_AUDIT) - audited0;
      assert.ok(audited >= 2n, `STAT_AUDIT counted ${audited}`);
      assert.ok(slots.readCounter(defaultCounter)[0] - counted0 >= audited);
      await waitFor(
        "an audit sample",
        () => events.find((e) => e.kind === "audit" && e.dport === 80 && e.dst === SERVER4),
      );
      // The spoofed datagrams get through in audit mode: the check above could see them.
      const got = await udpSpoofCheck(server, client, 4, 6200, 41200);
      assert.match(got, /got spoof-sport/, `audit: ${got}`);
      slots.setAudit(false);
      assert.equal(await reach(client, "tcp", SERVER4, 80), false, "TCP 80 after audit");
    } finally {
      await reader.close();
      await loop;
      server.enter(() => {
        if (tc) {
          const t = tc as ReturnType<typeof attachTcEgress>;
          detachTcEgress(ifindex, { progId: t.progId, createdQdisc: t.createdQdisc });
        }
        xdpDetach(ifindex, "generic", { expectFd: xdp.fd });
      });
      xdp.close();
      learner.close();
      slots.remove(installed);
      dp.close();
    }
    assert.equal(xdpOf(server, iface).mode, "none");
  });
});
