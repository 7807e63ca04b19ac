/** Command-line parsing (lib/cli/) and the error classes (lib/base/errors.ts). */

import assert from "node:assert/strict";
import {
  type Command,
  DEFAULT_CONTAINERD_SOCKET,
  DEFAULT_PIN_PATH,
  helpText,
  ipFamily,
  parseCommandLine,
  SUBCOMMANDS,
} from "../../lib/cli/mod.ts";
import { VERSION } from "../../lib/base/version.ts";
import {
  ConfigError,
  describeError,
  exitCodeOf,
  RuntimeError,
  UsageError,
} from "../../lib/base/errors.ts";
import denoJson from "../../deno.json" with { type: "json" };

/** Parses with an empty environment unless one is given. */
function parse(line: string | string[], env: Record<string, string> = {}): Command {
  const args = typeof line === "string" ? line.split(" ").filter((a) => a !== "") : line;
  return parseCommandLine(args, { env: (name) => env[name] });
}

/** Asserts that parsing fails with a UsageError whose message matches every pattern. */
function usageError(line: string | string[], ...patterns: RegExp[]): UsageError {
  let caught: unknown;
  try {
    parse(line);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof UsageError, `expected a UsageError for ${JSON.stringify(line)}`);
  assert.equal(exitCodeOf(caught), 2);
  assert.ok(!caught.message.includes("\n"), `one line: ${caught.message}`);
  assert.match(caught.message, /see 'tinyfw( [a-z]+)? --help'$/);
  for (const p of patterns) assert.match(caught.message, p);
  return caught;
}

const RUN_DEFAULTS = {
  cmd: "run",
  ifaces: [],
  cmode: false,
  xdpMode: "auto",
  containerdSocket: DEFAULT_CONTAINERD_SOCKET,
  namespaces: [],
  pinPath: DEFAULT_PIN_PATH,
  keepOnExit: false,
  audit: false,
  logLevel: "info",
  logFormat: "text",
};

// --- run ---------------------------------------------------------------

Deno.test("run is implied when the first argument is an option", () => {
  assert.deepEqual(parse("--iface eth0"), { ...RUN_DEFAULTS, ifaces: ["eth0"] });
  assert.deepEqual(parse("--cmode"), { ...RUN_DEFAULTS, cmode: true });
  assert.deepEqual(parse("run --iface eth0"), parse("--iface eth0"));
  assert.deepEqual(parse("--iface=eth0"), parse("--iface eth0"));
});

Deno.test("run: every option and its value", () => {
  const cmd = parse(
    "run --iface eth0 --iface eth1 --cmode --policy /etc/tinyfw/p.yaml --xdp-mode native " +
      "--containerd-socket /tmp/c.sock --namespace k8s.io --namespace default " +
      "--metrics-addr 127.0.0.1:9100 --pin-path /sys/fs/bpf/t --keep-on-exit --audit " +
      "--log-level debug --log-format json",
  );
  assert.deepEqual(cmd, {
    cmd: "run",
    ifaces: ["eth0", "eth1"],
    cmode: true,
    policy: "/etc/tinyfw/p.yaml",
    xdpMode: "native",
    containerdSocket: "/tmp/c.sock",
    namespaces: ["k8s.io", "default"],
    metricsAddr: { hostname: "127.0.0.1", port: 9100 },
    pinPath: "/sys/fs/bpf/t",
    keepOnExit: true,
    audit: true,
    logLevel: "debug",
    logFormat: "json",
  });
});

Deno.test("run: optional values are absent, not undefined", () => {
  const cmd = parse("--iface eth0");
  assert.ok(!("policy" in cmd));
  assert.ok(!("metricsAddr" in cmd));
});

Deno.test("run: --iface and --cmode combine; repeated values are kept once, in order", () => {
  const cmd = parse("--iface eth1 --cmode --iface eth0 --iface eth1");
  assert.equal(cmd.cmd, "run");
  if (cmd.cmd !== "run") return;
  assert.deepEqual(cmd.ifaces, ["eth1", "eth0"]);
  assert.equal(cmd.cmode, true);
  const ns = parse("--cmode --namespace a --namespace b --namespace a");
  assert.deepEqual(ns.cmd === "run" && ns.namespaces, ["a", "b"]);
});

Deno.test("run: each --xdp-mode", () => {
  for (const mode of ["auto", "native", "generic"]) {
    const cmd = parse(`--iface eth0 --xdp-mode ${mode}`);
    assert.equal(cmd.cmd === "run" && cmd.xdpMode, mode);
  }
});

Deno.test("run: interface names that Linux accepts", () => {
  for (const name of ["eth0", "veth1a2b3c4d", "cali0123456789a", "lxc_health", "br-1.100", "a"]) {
    const cmd = parse(["--iface", name]);
    assert.deepEqual(cmd.cmd === "run" && cmd.ifaces, [name]);
  }
});

Deno.test("run: --containerd-socket accepts a unix:// address", () => {
  const cmd = parse("--cmode --containerd-socket unix:///run/k3s/containerd/containerd.sock");
  assert.equal(cmd.cmd === "run" && cmd.containerdSocket, "/run/k3s/containerd/containerd.sock");
});

Deno.test("run: --metrics-addr forms", () => {
  const cases: [string, { hostname: string; port: number }][] = [
    ["127.0.0.1:9100", { hostname: "127.0.0.1", port: 9100 }],
    [":9100", { hostname: "0.0.0.0", port: 9100 }],
    ["0.0.0.0:0", { hostname: "0.0.0.0", port: 0 }],
    ["localhost:65535", { hostname: "localhost", port: 65535 }],
    ["node-1.example:80", { hostname: "node-1.example", port: 80 }],
    ["[::1]:9100", { hostname: "::1", port: 9100 }],
    ["[::]:9100", { hostname: "::", port: 9100 }],
  ];
  for (const [addr, want] of cases) {
    const cmd = parse(["--cmode", "--metrics-addr", addr]);
    assert.deepEqual(cmd.cmd === "run" && cmd.metricsAddr, want, addr);
  }
});

Deno.test("run: --pin-path loses its trailing slash", () => {
  const cmd = parse("--iface eth0 --pin-path /sys/fs/bpf/mine/");
  assert.equal(cmd.cmd === "run" && cmd.pinPath, "/sys/fs/bpf/mine");
});

Deno.test("run: errors", () => {
  usageError([], /nothing to do/, /--iface/, /--cmode/);
  usageError("run", /needs --iface NAME or --cmode/, /tinyfw run --help/);
  usageError("--policy p.yaml", /needs --iface NAME or --cmode/, /'tinyfw --help'/);
  usageError("--iface", /--iface needs a value/);
  usageError("--iface=", /--iface needs a value/);
  usageError(["--iface", ""], /--iface needs a value/);
  usageError("--iface --cmode", /--iface needs a value/);
  usageError("--iface -x", /--iface needs a value/);
  usageError("--iface eth0 --policy", /--policy needs a value: --policy FILE/);
  usageError("--iface eth0 --xdp-mode", /--xdp-mode needs a value/);
  usageError("--iface eth0 --xdp-mode fast", /--xdp-mode must be auto, native or generic/, /fast/);
  usageError("--iface eth0 --xdp-mode AUTO", /--xdp-mode/);
  usageError("--cmode=yes", /--cmode takes no value/);
  usageError("--iface eth0 --audit=false", /--audit takes no value/);
  usageError("--iface eth0 --keep-on-exit=1", /--keep-on-exit takes no value/);
  usageError("--iface eth0 --bogus", /unknown option --bogus/);
  usageError("--ifac eth0", /unknown option --ifac \(did you mean --iface\?\)/);
  usageError("--iface eth0 -x", /unknown option -x/);
  usageError("--iface eth0 --json", /--json is not an option of 'tinyfw run'/);
  usageError("--iface eth0 --proto tcp", /--proto is not an option of 'tinyfw run'/);
  usageError("--iface eth0 stray", /unexpected argument 'stray'/);
  usageError("--cmode eth0", /unexpected argument 'eth0'/, /use --iface eth0/);
  usageError("run -- --cmode", /unexpected argument '--cmode'/);
  usageError("--iface eth0 --policy a --policy b", /--policy was given more than once/);
  usageError("--cmode --xdp-mode auto --xdp-mode native", /--xdp-mode was given more than once/);
  usageError("--iface 0123456789abcdef", /--iface '0123456789abcdef' is not an interface name/);
  usageError("--iface a/b", /is not an interface name/);
  usageError("--iface a:b", /is not an interface name/);
  usageError(["--iface", "a b"], /is not an interface name/);
  usageError("--iface ..", /is not an interface name/);
  usageError("--iface eth0 --namespace k8s.io", /--namespace only applies with --cmode/);
  usageError("--iface eth0 --containerd-socket /x.sock", /--containerd-socket only applies/);
  usageError("--cmode --namespace bad_", /--namespace 'bad_' is not a containerd namespace/);
  usageError("--cmode --namespace a/b", /is not a containerd namespace/);
  usageError("--cmode --containerd-socket unix://", /--containerd-socket needs a path/);
  usageError("--cmode --pin-path relative/dir", /--pin-path must be an absolute path/);
  usageError("--cmode --metrics-addr", /--metrics-addr needs a value/);
  usageError("--cmode --metrics-addr 9100", /--metrics-addr must be HOST:PORT/, /'9100'/);
  usageError("--cmode --metrics-addr ::1:9100", /IPv6 host in brackets/);
  usageError("--cmode --metrics-addr host:65536", /--metrics-addr port must be .* 0-65535/);
  usageError("--cmode --metrics-addr host:-1", /--metrics-addr port/);
  usageError("--cmode --metrics-addr host:http", /--metrics-addr port/);
  usageError("--cmode --metrics-addr 127.0.0.1:", /--metrics-addr port/);
  usageError("--cmode --metrics-addr bad_host:1", /host 'bad_host' is not a host name/);
  usageError("--cmode --metrics-addr 300.1.1.1:1", /host '300.1.1.1'/);
  usageError("--cmode --metrics-addr [1.2.3.4]:1", /not an IPv6 address/);
  usageError("--cmode --metrics-addr [::1]", /--metrics-addr must be HOST:PORT/);
  // A bad value is named even when --iface and --cmode are missing too.
  usageError("--xdp-mode turbo", /--xdp-mode must be auto, native or generic, not 'turbo'/);
  usageError("--metrics-addr garbage", /--metrics-addr must be HOST:PORT/, /'garbage'/);
  usageError("--pin-path rel", /--pin-path must be an absolute path/);
  usageError("--namespace a/b", /is not a containerd namespace/);
  usageError(
    "--iface eth*",
    /--iface 'eth\*' is not an interface name: patterns are not supported/,
  );
  usageError("--help=1", /--help takes no value \(got '1'\)/);
  usageError("check --help=yes", /--help takes no value/);
});

// --- logging options -------------------------------------------------------

Deno.test("log level: flag, then TINYFW_LOG, then info", () => {
  const level = (line: string, env: Record<string, string> = {}) => {
    const cmd = parse(line, env);
    return cmd.cmd === "run" ? cmd.logLevel : undefined;
  };
  assert.equal(level("--cmode"), "info");
  assert.equal(level("--cmode", { TINYFW_LOG: "debug" }), "debug");
  assert.equal(level("--cmode", { TINYFW_LOG: " WARN " }), "warn");
  assert.equal(level("--cmode", { TINYFW_LOG: "" }), "info");
  assert.equal(level("--cmode --log-level error", { TINYFW_LOG: "debug" }), "error");
  // The flag wins even over a TINYFW_LOG that would be an error on its own.
  assert.equal(level("--cmode --log-level warn", { TINYFW_LOG: "loud" }), "warn");
  for (const l of ["debug", "info", "warn", "error"]) {
    assert.equal(level(`--cmode --log-level ${l}`), l);
  }
});

Deno.test("log level: a bad TINYFW_LOG is a usage error naming the variable", () => {
  assert.throws(
    () => parse("--cmode", { TINYFW_LOG: "verbose" }),
    (err: unknown) =>
      err instanceof UsageError && /TINYFW_LOG='verbose' is not a log level/.test(err.message) &&
      /debug, info, warn or error/.test(err.message),
  );
});

Deno.test("log options: errors, and every working command takes them", () => {
  usageError("--cmode --log-level verbose", /--log-level must be debug, info, warn or error/);
  usageError("--cmode --log-format xml", /--log-format must be text or json, not 'xml'/);
  usageError("--cmode --log-level", /--log-level needs a value/);
  for (const line of ["check", "explain --proto tcp", "status", "detach"]) {
    const cmd = parse(`${line} --log-level debug --log-format json`);
    assert.ok("logLevel" in cmd && cmd.logLevel === "debug", line);
    assert.ok("logFormat" in cmd && cmd.logFormat === "json", line);
  }
});

// --- check ------------------------------------------------------------------

Deno.test("check", () => {
  assert.deepEqual(parse("check"), { cmd: "check", logLevel: "info", logFormat: "text" });
  assert.deepEqual(parse("check --policy p.yaml"), {
    cmd: "check",
    policy: "p.yaml",
    logLevel: "info",
    logFormat: "text",
  });
  usageError("check --policy", /--policy needs a value/, /'tinyfw check --help'/);
  usageError("check p.yaml", /unexpected argument 'p.yaml'/, /'tinyfw check --help'/);
  usageError("check --iface eth0", /--iface is not an option of 'tinyfw check'/);
  usageError("check --policy a --policy b", /more than once/);
});

// --- explain -----------------------------------------------------------------

Deno.test("explain: defaults", () => {
  assert.deepEqual(parse("explain --proto tcp"), {
    cmd: "explain",
    proto: "tcp",
    family: 4,
    direction: "ingress",
    json: false,
    logLevel: "info",
    logFormat: "text",
  });
  const v6 = parse("explain --proto icmpv6");
  assert.equal(v6.cmd === "explain" && v6.family, 6);
});

Deno.test("explain: every option", () => {
  assert.deepEqual(
    parse(
      "explain --policy p.yaml --name web --proto udp --src 10.0.0.7 --dst 10.96.0.10 " +
        "--sport 40000 --dport 53 --direction egress --json",
    ),
    {
      cmd: "explain",
      policy: "p.yaml",
      name: "web",
      proto: "udp",
      family: 4,
      src: "10.0.0.7",
      dst: "10.96.0.10",
      sport: 40000,
      dport: 53,
      direction: "egress",
      json: true,
      logLevel: "info",
      logFormat: "text",
    },
  );
  const icmp = parse("explain --proto icmp --dst 192.0.2.1 --icmp-type 3 --icmp-code 1");
  assert.equal(icmp.cmd === "explain" && icmp.icmpType, 3);
  assert.equal(icmp.cmd === "explain" && icmp.icmpCode, 1);
});

Deno.test("explain: each protocol and the edge ports", () => {
  for (const proto of ["tcp", "udp", "sctp"]) {
    for (const port of [0, 1, 65535]) {
      const cmd = parse(`explain --proto ${proto} --sport ${port} --dport ${port}`);
      assert.equal(cmd.cmd === "explain" && cmd.dport, port);
      assert.equal(cmd.cmd === "explain" && cmd.sport, port);
    }
  }
});

Deno.test("explain: the address family follows the addresses", () => {
  const fam = (line: string) => {
    const cmd = parse(line);
    return cmd.cmd === "explain" ? cmd.family : undefined;
  };
  assert.equal(fam("explain --proto tcp --src fd00::1"), 6);
  assert.equal(fam("explain --proto tcp --dst 2001:db8::1 --src ::ffff:10.0.0.1"), 6);
  assert.equal(fam("explain --proto udp --dst 10.0.0.1"), 4);
  assert.equal(fam("explain --proto icmpv6 --src fe80::1"), 6);
});

Deno.test("explain: ICMP type names depend on the protocol", () => {
  const type = (line: string) => {
    const cmd = parse(line);
    return cmd.cmd === "explain" ? cmd.icmpType : undefined;
  };
  assert.equal(type("explain --proto icmp --icmp-type echo-request"), 8);
  assert.equal(type("explain --proto icmp --icmp-type echo-reply"), 0);
  assert.equal(type("explain --proto icmpv6 --icmp-type echo-request"), 128);
  assert.equal(type("explain --proto icmpv6 --icmp-type neighbor-solicitation"), 135);
  assert.equal(type("explain --proto icmp --icmp-type 255"), 255);
  usageError("explain --proto icmp --icmp-type packet-too-big", /--icmp-type must be a number/);
});

Deno.test("explain: errors", () => {
  usageError("explain", /tinyfw explain needs --proto/, /tcp, udp, sctp, icmp or icmpv6/);
  usageError("explain --dport 80", /needs --proto/);
  usageError("explain --proto", /--proto needs a value/);
  usageError("explain --proto gre", /--proto must be tcp, udp, sctp, icmp or icmpv6, not 'gre'/);
  usageError("explain --proto any", /--proto must be/);
  usageError("explain --proto tcp --direction both", /--direction must be ingress or egress/);
  usageError("explain --proto tcp --dport 65536", /--dport must be a port number 0-65535/);
  usageError("explain --proto tcp --sport 99999", /--sport must be a port number/);
  usageError("explain --proto tcp --dport -1", /--dport must be a port number/, /'-1'/);
  usageError("explain --proto tcp --dport=-1", /--dport must be a port number/);
  usageError("explain --proto tcp --dport 08", /--dport must be a port number/);
  usageError("explain --proto tcp --dport 80.5", /--dport must be a port number/);
  usageError("explain --proto tcp --dport http", /--dport must be a port number/);
  usageError("explain --proto tcp --dport 1e3", /--dport must be a port number/);
  usageError("explain --proto tcp --dport", /--dport needs a value/);
  usageError("explain --proto icmp --dport 80", /--dport applies only to --proto tcp, udp or sctp/);
  usageError("explain --proto icmpv6 --sport 80", /--sport applies only/);
  usageError("explain --proto tcp --icmp-type 8", /--icmp-type applies only to --proto icmp/);
  usageError("explain --proto udp --icmp-code 0", /--icmp-code applies only/);
  usageError("explain --proto icmp --icmp-type 256", /--icmp-type must be a number 0-255/);
  usageError("explain --proto icmp --icmp-code 256", /--icmp-code must be a number 0-255/);
  usageError("explain --proto icmp --icmp-code echo-request", /--icmp-code must be a number/);
  usageError("explain --proto tcp --src 10.0.0", /--src '10.0.0' is not an IPv4 or IPv6 address/);
  usageError("explain --proto tcp --src 10.0.0.256", /--src '10.0.0.256'/);
  usageError("explain --proto tcp --src 10.0.0.0/8", /--src '10.0.0.0\/8'/);
  usageError("explain --proto tcp --dst host.example", /--dst 'host.example'/);
  usageError("explain --proto tcp --dst fd00:::1", /--dst 'fd00:::1'/);
  usageError("explain --proto tcp --src 10.0.0.1 --dst fd00::1", /both be IPv4 or both be IPv6/);
  usageError("explain --proto icmp --src fd00::1", /use --proto icmpv6 with IPv6/);
  usageError("explain --proto icmpv6 --dst 10.0.0.1", /use --proto icmp with IPv4/);
  usageError("explain --proto tcp --cmode", /--cmode is not an option of 'tinyfw explain'/);
  usageError("explain --proto tcp --json=yes", /--json takes no value/);
  usageError("explain --proto tcp extra", /unexpected argument 'extra'/);
  usageError("explain --proto tcp --name", /--name needs a value: --name POLICY/);
});

Deno.test("ipFamily: a syntax check of addresses", () => {
  for (const a of ["0.0.0.0", "255.255.255.255", "10.1.2.3"]) assert.equal(ipFamily(a), 4, a);
  for (
    const a of [
      "::",
      "::1",
      "fd00::a",
      "2001:db8:0:0:0:0:0:1",
      "1:2:3:4:5:6:7::",
      "::ffff:1.2.3.4",
      "FE80::1",
    ]
  ) assert.equal(ipFamily(a), 6, a);
  for (
    const a of [
      "",
      "1.2.3",
      "1.2.3.4.5",
      "01.2.3.4",
      "1.2.3.-4",
      "1:2:3:4:5:6:7:8:9",
      "1:2:3:4:5:6:7",
      "1::2::3",
      "12345::",
      "::g",
      "fe80::1%eth0",
      "::1.2.3",
      "1.2.3.4::",
    ]
  ) assert.equal(ipFamily(a), undefined, a);
});

// --- status, detach ------------------------------------------------------------

Deno.test("status and detach", () => {
  assert.deepEqual(parse("status"), {
    cmd: "status",
    json: false,
    pinPath: DEFAULT_PIN_PATH,
    logLevel: "info",
    logFormat: "text",
  });
  const status = parse("status --json --pin-path /sys/fs/bpf/x");
  assert.equal(status.cmd === "status" && status.json, true);
  assert.equal(status.cmd === "status" && status.pinPath, "/sys/fs/bpf/x");
  assert.deepEqual(parse("detach"), {
    cmd: "detach",
    pinPath: DEFAULT_PIN_PATH,
    logLevel: "info",
    logFormat: "text",
  });
  assert.equal(parse("detach --pin-path /sys/fs/bpf/y").cmd, "detach");
  usageError("status --policy p.yaml", /--policy is not an option of 'tinyfw status'/);
  usageError("status eth0", /unexpected argument 'eth0'/);
  usageError("status --pin-path", /--pin-path needs a value/);
  usageError("detach --json", /--json is not an option of 'tinyfw detach'/);
  usageError("detach --pin-path tinyfw", /--pin-path must be an absolute path/);
  usageError("detach --all", /unknown option --all/);
});

// --- commands, help, version -------------------------------------------------------------

Deno.test("unknown commands", () => {
  usageError("foo", /unknown command 'foo'; see 'tinyfw --help'/);
  usageError("chek --policy p.yaml", /unknown command 'chek' \(did you mean check\?\)/);
  usageError("version", /did you mean --version\?/);
  usageError("eth0", /unknown command 'eth0'/);
  usageError("-", /unknown command '-'/);
});

Deno.test("--version everywhere", () => {
  const want = { cmd: "version", text: `tinyfw ${denoJson.version}` };
  assert.equal(VERSION, denoJson.version);
  assert.deepEqual(parse("--version"), want);
  assert.deepEqual(parse("check --version"), want);
  assert.deepEqual(parse("--iface eth0 --version"), want);
  usageError("--version=1", /--version takes no value/);
});

Deno.test("--help wins over everything else", () => {
  assert.deepEqual(parse("--help"), { cmd: "help", text: helpText() });
  assert.deepEqual(parse("-h"), { cmd: "help", text: helpText() });
  assert.deepEqual(parse("--iface eth0 --help"), { cmd: "help", text: helpText() });
  assert.deepEqual(parse("--help --version"), { cmd: "help", text: helpText() });
  assert.deepEqual(parse("run --help"), { cmd: "help", text: helpText("run") });
  assert.deepEqual(parse("run --bogus --help"), { cmd: "help", text: helpText("run") });
  assert.deepEqual(parse("check -h"), { cmd: "help", text: helpText("check") });
  assert.deepEqual(parse("explain --dport 99999 --help"), {
    cmd: "help",
    text: helpText("explain"),
  });
  assert.deepEqual(parse("explain --proto --help"), { cmd: "help", text: helpText("explain") });
  assert.deepEqual(parse("status --help"), { cmd: "help", text: helpText("status") });
  assert.deepEqual(parse("detach --help"), { cmd: "help", text: helpText("detach") });
});

Deno.test("tinyfw help [COMMAND]", () => {
  assert.deepEqual(parse("help"), { cmd: "help", text: helpText() });
  assert.deepEqual(parse("help --help"), { cmd: "help", text: helpText() });
  for (const c of SUBCOMMANDS) {
    assert.deepEqual(parse(["help", c]), { cmd: "help", text: helpText(c) });
  }
  usageError("help nope", /unknown command 'nope'/);
  usageError("help expalin", /did you mean explain\?/);
  usageError("help run check", /unexpected argument 'check'/);
  usageError("help --iface eth0", /--iface is not an option of 'tinyfw help'/);
});

Deno.test("help texts: usage, every option with its default, examples, 80 columns", () => {
  const top = helpText();
  assert.match(top, /^tinyfw \d+\.\d+\.\d+ /);
  assert.match(top, /Usage:\n {2}tinyfw \[run\] \[options\]/);
  for (const c of SUBCOMMANDS) assert.match(top, new RegExp(`^ {2}${c} `, "m"));
  for (
    const flag of [
      "--iface NAME",
      "--cmode",
      "--policy FILE",
      "--xdp-mode MODE",
      "--containerd-socket PATH",
      "--namespace NS",
      "--metrics-addr HOST:PORT",
      "--pin-path DIR",
      "--keep-on-exit",
      "--audit",
      "--log-level LEVEL",
      "--log-format FORMAT",
      "-h, --help",
      "--version",
    ]
  ) assert.ok(top.includes(`  ${flag} `), flag);
  assert.ok(top.includes(DEFAULT_PIN_PATH));
  assert.ok(top.includes(DEFAULT_CONTAINERD_SOCKET));
  assert.match(top, /\(default: auto\)/);
  assert.match(top, /\(default: info\)/);
  assert.match(top, /TINYFW_LOG/);
  assert.match(top, /Examples:\n {2}tinyfw --iface eth0/);

  const explain = helpText("explain");
  for (
    const flag of [
      "--proto P",
      "--src IP",
      "--dst IP",
      "--sport N",
      "--dport N",
      "--direction DIR",
      "--icmp-type T",
      "--icmp-code C",
      "--json",
      "--name POLICY",
    ]
  ) assert.ok(explain.includes(`  ${flag} `), flag);
  assert.match(explain, /\(default: ingress\)/);
  assert.match(helpText("status"), /--json/);
  assert.match(helpText("detach"), /--pin-path DIR/);
  assert.match(helpText("check"), /--policy FILE/);

  for (const topic of [undefined, ...SUBCOMMANDS]) {
    const text = helpText(topic);
    assert.match(text, /Usage:\n/, String(topic));
    assert.match(text, /Examples:\n/, String(topic));
    assert.ok(!text.endsWith("\n"), "console.log adds the newline");
    for (const line of text.split("\n")) {
      assert.ok(line.length <= 80, `${topic}: line too long: ${line}`);
    }
  }
});

Deno.test("the arguments array is not modified", () => {
  const args = ["run", "--iface", "eth0"];
  parseCommandLine(args, { env: () => undefined });
  assert.deepEqual(args, ["run", "--iface", "eth0"]);
});

// --- errors.ts -------------------------------------------------------------------

Deno.test("errors: exit codes and messages", () => {
  assert.equal(exitCodeOf(new UsageError("bad flag")), 2);
  assert.equal(exitCodeOf(new ConfigError("bad policy")), 2);
  assert.equal(exitCodeOf(new RuntimeError("no privileges")), 1);
  assert.equal(exitCodeOf(new Error("unexpected")), 1);
  assert.equal(exitCodeOf("a string"), 1);
  const cause = new Error("EPERM");
  const err = new ConfigError("policy.yaml has 2 errors; fix them and run tinyfw check again", {
    details: [
      "web rule 0 ports: 0 is not a port (line 7)",
      "web rule 1: unknown key 'port' (line 9)",
    ],
    cause,
  });
  assert.equal(err.name, "ConfigError");
  assert.equal(err.cause, cause);
  assert.ok(err instanceof Error);
  assert.equal(
    describeError(err),
    "policy.yaml has 2 errors; fix them and run tinyfw check again\n" +
      "  web rule 0 ports: 0 is not a port (line 7)\n" +
      "  web rule 1: unknown key 'port' (line 9)",
  );
  assert.equal(describeError(new RuntimeError("x")), "x");
  assert.equal(describeError(new Error("plain")), "plain");
  assert.equal(describeError(42), "42");
  assert.deepEqual(new UsageError("u").details, []);
});
