/**
 * A user's first minute: a fresh clone of this repository, the README's
 * first command as the first thing typed in it (with a veth of the test's
 * own instead of eth0), a filter that works, and nothing printed that is not
 * tinyfw's own (no Deno warnings, download or task lines).
 *
 * The clone is of the committed state (HEAD), as a user would get it; the
 * machine has what setup.sh installs already (CI ran it), so setup finds
 * nothing to do, and the clone builds its XDP object on the first start.
 */
import assert from "node:assert/strict";
import { reach, ROOT, SERVER4, startServer, withTopology, xdpOf } from "../helpers/topology.ts";

/** The README's first command: the first line of its first ```sh block. */
function readmeFirstCommand(): string {
  const readme = Deno.readTextFileSync(`${ROOT}README.md`);
  const m = /```sh\n([^\n]+)\n```/.exec(readme);
  assert.ok(m, "the README has a ```sh block");
  return m[1];
}

/** Lines tinyfw's own code prints on a start: setup, the object build, the agent's log. */
const OWN_LINE =
  /^(setup: |build-bpf: |\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO |WARN |ERROR) )/;

Deno.test("first run: the README's first command, in a fresh clone, filters an interface", async () => {
  const command = readmeFirstCommand();
  assert.match(command, /--iface eth0\b/, command);
  const clone = await Deno.makeTempDir({ prefix: "tinyfw-clone-" });
  try {
    const git = await new Deno.Command("git", {
      args: ["clone", "--quiet", ROOT, clone],
      stdout: "null",
      stderr: "piped",
    }).output();
    assert.equal(git.code, 0, new TextDecoder().decode(git.stderr));

    await withTopology(async ({ server, client, iface }) => {
      await startServer(server, { tcp: [80, 8080] });
      assert.equal(await reach(client, "tcp", SERVER4, 80), true, "port 80 answers before start");

      // Run as typed (in the server's namespace, in a process group of its own, as a shell is).
      const typed = command.replace(/--iface eth0\b/, `--iface ${iface}`);
      const child = new Deno.Command("setsid", {
        args: ["nsenter", `--net=${server.path}`, "bash", "-c", typed],
        cwd: clone,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        env: { NO_COLOR: "1" },
      }).spawn();
      let output = "";
      const collect = (s: ReadableStream<Uint8Array>) =>
        s.pipeTo(
          new WritableStream({ write: (c) => void (output += new TextDecoder().decode(c)) }),
        );
      const pumps = Promise.all([collect(child.stdout), collect(child.stderr)]);
      let exited = false;
      const status = child.status.finally(() => exited = true);
      try {
        const deadline = Date.now() + 120_000;
        while (!new RegExp(`attached to ${iface} in`).test(output)) {
          assert.ok(!exited, `the command exited before attaching:\n${output}`);
          assert.ok(Date.now() < deadline, `not attached after 120 s:\n${output}`);
          await new Promise((r) => setTimeout(r, 100));
        }
        assert.notEqual(xdpOf(server, iface).mode, "none");
        assert.equal(await reach(client, "tcp", SERVER4, 80), false, "TCP 80 got through");
        assert.equal(await reach(client, "tcp", SERVER4, 8080), true, "TCP 8080 was blocked");
      } finally {
        // Ctrl-C: SIGINT to the whole foreground group.
        if (!exited) Deno.kill(-child.pid, "SIGINT");
      }
      const { code } = await status;
      await pumps;
      assert.equal(code, 0, output);
      assert.equal(xdpOf(server, iface).mode, "none", "still attached after Ctrl-C");
      const foreign = output.split("\n").filter((l) => l !== "" && !OWN_LINE.test(l));
      assert.deepEqual(foreign, [], `printed lines that are not tinyfw's own:\n${output}`);
      assert.match(
        output,
        /build-bpf: built bpf\/tinyfw.bpf.o/,
        "the fresh clone built its object",
      );
    });
  } finally {
    await Deno.remove(clone, { recursive: true });
  }
});
