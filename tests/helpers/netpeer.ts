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
 */
import dgram from "node:dgram";

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
    console.error("usage: netpeer.ts serve|tcp|udp|flood|get ...");
    Deno.exit(2);
  }
}
