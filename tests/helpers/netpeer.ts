/**
 * A tiny network peer for end-to-end tests, run inside a test's network
 * namespace (`nsenter --net=/run/netns/NAME deno run -A tests/helpers/netpeer.ts ...`).
 *
 *   serve --tcp 80,8080 --udp 5353     listen on every address (IPv4 and IPv6);
 *                                      TCP: send "hello\n" and close; UDP: echo.
 *                                      Prints "ready" once listening.
 *   tcp HOST PORT [TIMEOUT_MS]         connect and read the greeting: exit 0, else 1
 *   udp HOST PORT [TIMEOUT_MS]         send a datagram, wait for the echo: exit 0, else 1
 *   flood HOST PORT [PER_MS]           send UDP datagrams (PER_MS a millisecond, default 5)
 *                                      until SIGTERM, then print "sent N received M" (M
 *                                      counts the echoes: datagrams that got through)
 *   get URL                            HTTP GET: print the status on the first line, then
 *                                      the body; exit 0 when it answered, else 1
 *   spoof-client FAMILY SERVER PORT LPORT
 *                                      the client of the UDP spoofing check: answers one
 *                                      datagram on PORT ("pong"), then sends to the server's
 *                                      LPORT from another port ("spoof-sport"), to LPORT+1
 *                                      from PORT ("spoof-dport"), and one true reply
 *                                      ("legit"); prints "ready", then "sent"
 *   spoof-server FAMILY CLIENT PORT LPORT
 *                                      its server: one exchange from LPORT ("exchanged
 *                                      pong"), then prints "got DATA PORT" for what arrives
 *                                      on LPORT and LPORT+1 in 2 s
 *   raw-tcp FAMILY SRC DST SPORT DPORT FLAGS
 *                                      sends one TCP segment with FLAGS through a raw socket
 *                                      (the kernel adds the IP header)
 */
import dgram from "node:dgram";
import { AF_INET, AF_INET6, close, sendto, SOCK_RAW, socket } from "../../lib/ffi/libc.ts";
import { parseIp } from "../../lib/net/cidr.ts";

async function serve(tcpPorts: number[], udpPorts: number[]): Promise<void> {
  for (const port of tcpPorts) {
    const listener = Deno.listen({ hostname: "::", port });
    (async () => {
      for await (const conn of listener) {
        conn.write(new TextEncoder().encode("hello\n")).finally(() => conn.close());
      }
    })();
  }
  for (const port of udpPorts) {
    const sock = dgram.createSocket({ type: "udp6", ipv6Only: false });
    sock.on("message", (msg, rinfo) => sock.send(msg, rinfo.port, rinfo.address));
    await new Promise<void>((resolve) => sock.bind(port, "::", resolve));
  }
  console.log("ready");
  await new Promise(() => {});
}

async function tcpConnect(host: string, port: number, timeoutMs: number): Promise<boolean> {
  const attempt = (async () => {
    const conn = await Deno.connect({ hostname: host, port });
    try {
      const buf = new Uint8Array(16);
      const n = await conn.read(buf);
      return n !== null && new TextDecoder().decode(buf.subarray(0, n)).startsWith("hello");
    } finally {
      conn.close();
    }
  })();
  return await withTimeout(attempt, timeoutMs);
}

async function udpExchange(host: string, port: number, timeoutMs: number): Promise<boolean> {
  const sock = dgram.createSocket(host.includes(":") ? "udp6" : "udp4");
  try {
    const answered = new Promise<boolean>((resolve) => {
      sock.on("message", (msg) => resolve(msg.toString() === "ping"));
    });
    sock.send("ping", port, host);
    return await withTimeout(answered, timeoutMs);
  } finally {
    sock.close();
  }
}

async function withTimeout(p: Promise<boolean>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([p.catch(() => false), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function flood(host: string, port: number, perMs: number): Promise<void> {
  const sock = dgram.createSocket(host.includes(":") ? "udp6" : "udp4");
  let sent = 0, received = 0, running = true;
  sock.on("message", () => received++);
  Deno.addSignalListener("SIGTERM", () => running = false);
  console.log("flooding");
  const payload = new Uint8Array(64);
  while (running) {
    for (let i = 0; i < perMs; i++) {
      await new Promise<void>((resolve, reject) =>
        sock.send(payload, port, host, (err) => err ? reject(err) : resolve())
      );
      sent++;
    }
    await new Promise((r) => setTimeout(r, 1));
  }
  await new Promise((r) => setTimeout(r, 200)); // late echoes
  console.log(`sent ${sent} received ${received}`);
  sock.close();
}

async function get(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
    console.log(String(res.status));
    await Deno.stdout.write(new TextEncoder().encode(await res.text()));
    return true;
  } catch (e) {
    console.error(String(e));
    return false;
  }
}

function udpSocket(family: string, port: number): Promise<dgram.Socket> {
  const sock = dgram.createSocket(family === "4" ? "udp4" : "udp6");
  return new Promise((resolve) => sock.bind(port, () => resolve(sock)));
}

function nextDatagram(sock: dgram.Socket, ms: number): Promise<{ data: string; port: number }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("timed out")), ms);
    sock.once("message", (msg, rinfo) => {
      clearTimeout(timer);
      resolve({ data: msg.toString(), port: rinfo.port });
    });
  });
}

function send(sock: dgram.Socket, data: string, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) =>
    sock.send(data, port, host, (err) => err ? reject(err) : resolve())
  );
}

async function spoofClient(family: string, server: string, port: number, lport: number) {
  const s = await udpSocket(family, port);
  const other = await udpSocket(family, port + 1);
  console.log("ready");
  const first = await new Promise<dgram.RemoteInfo>((resolve) =>
    s.once("message", (_msg, rinfo) => resolve(rinfo))
  );
  await send(s, "pong", first.port, first.address);
  await new Promise((r) => setTimeout(r, 300));
  await send(other, "spoof-sport", lport, server);
  await send(s, "spoof-dport", lport + 1, server);
  await send(s, "legit", lport, server);
  console.log("sent");
  s.close();
  other.close();
}

async function spoofServer(family: string, client: string, port: number, lport: number) {
  const s = await udpSocket(family, lport);
  const t = await udpSocket(family, lport + 1);
  const answer = nextDatagram(s, 3000);
  await send(s, "ping", port, client);
  console.log(`exchanged ${(await answer).data}`);
  for (const sock of [s, t]) {
    sock.on("message", (msg, rinfo) => console.log(`got ${msg.toString()} ${rinfo.port}`));
  }
  await new Promise((r) => setTimeout(r, 2000));
  s.close();
  t.close();
}

/** The one's-complement sum of `b` (RFC 1071). */
function checksum(b: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < b.length; i += 2) sum += (b[i] << 8) | (b[i + 1] ?? 0);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return ~sum & 0xffff;
}

function rawTcp(src: string, dst: string, sport: number, dport: number, flags: number) {
  const from = parseIp(src), to = parseIp(dst);
  const tcp = new Uint8Array(20);
  const v = new DataView(tcp.buffer);
  v.setUint16(0, sport);
  v.setUint16(2, dport);
  v.setUint32(4, 1000); // seq
  v.setUint32(8, 2000); // ack
  tcp[12] = 5 << 4; // data offset: 5 words
  tcp[13] = flags;
  v.setUint16(14, 65535); // window
  const pseudo = to.family === 4
    ? [...from.addr, ...to.addr, 0, 6, 0, tcp.length]
    : [...from.addr, ...to.addr, 0, 0, 0, tcp.length, 0, 0, 0, 6];
  v.setUint16(16, checksum(new Uint8Array([...pseudo, ...tcp])));
  // sockaddr_in / sockaddr_in6 with port 0: the family in host order, then the address.
  const addr = new Uint8Array(to.family === 4 ? 16 : 28);
  new DataView(addr.buffer).setUint16(0, to.family === 4 ? AF_INET : AF_INET6, true);
  addr.set(to.addr, to.family === 4 ? 4 : 8);
  const fd = socket(to.family === 4 ? AF_INET : AF_INET6, SOCK_RAW, 6);
  try {
    sendto(fd, tcp, 0, addr);
  } finally {
    close(fd);
  }
}

function ports(list: string | undefined): number[] {
  return list ? list.split(",").map(Number) : [];
}

if (import.meta.main) {
  const [mode, ...rest] = Deno.args;
  if (mode === "serve") {
    const tcp = rest.indexOf("--tcp");
    const udp = rest.indexOf("--udp");
    await serve(
      ports(tcp >= 0 ? rest[tcp + 1] : undefined),
      ports(udp >= 0 ? rest[udp + 1] : undefined),
    );
  } else if (mode === "flood") {
    const [host, port, perMs] = rest;
    await flood(host, Number(port), Number(perMs ?? 5));
    Deno.exit(0);
  } else if (mode === "spoof-client" || mode === "spoof-server") {
    const [family, host, port, lport] = rest;
    await (mode === "spoof-client" ? spoofClient : spoofServer)(
      family,
      host,
      Number(port),
      Number(lport),
    );
    Deno.exit(0);
  } else if (mode === "raw-tcp") {
    const [_family, src, dst, sport, dport, flags] = rest;
    rawTcp(src, dst, Number(sport), Number(dport), Number(flags));
    Deno.exit(0);
  } else if (mode === "get") {
    Deno.exit(await get(rest[0]) ? 0 : 1);
  } else if (mode === "tcp" || mode === "udp") {
    const [host, port, timeout] = rest;
    const ok = mode === "tcp"
      ? await tcpConnect(host, Number(port), Number(timeout ?? 1500))
      : await udpExchange(host, Number(port), Number(timeout ?? 1500));
    console.log(ok ? "ok" : "failed");
    Deno.exit(ok ? 0 : 1);
  } else {
    console.error(
      "usage: netpeer.ts serve|tcp|udp|flood|get|spoof-client|spoof-server|raw-tcp ...",
    );
    Deno.exit(2);
  }
}
