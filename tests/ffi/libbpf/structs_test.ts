/**
 * The structs tinyfw hands to libbpf and the kernel (lib/ffi/libbpf/structs.ts)
 * against the installed headers: a C program generated from that one
 * definition prints `sizeof` and every `offsetof`, compiled here with clang.
 */
import assert from "node:assert/strict";
import { STRUCTS } from "../../../lib/ffi/libbpf/structs.ts";

function program(): string {
  const headers = new Set(Object.values(STRUCTS).map((s) => s.header));
  const lines = [
    "#include <stddef.h>",
    "#include <stdio.h>",
    ...[...headers].map((h) => `#include <${h}>`),
    "int main(void) {",
  ];
  for (const [name, s] of Object.entries(STRUCTS)) {
    lines.push(`  printf("${name} size %zu\\n", sizeof(struct ${name}));`);
    for (const field of Object.keys(s.fields)) {
      lines.push(`  printf("${name} ${field} %zu\\n", offsetof(struct ${name}, ${field}));`);
    }
  }
  lines.push("  return 0;", "}");
  return lines.join("\n") + "\n";
}

Deno.test("abi: every libbpf and kernel struct's size and field offsets match the installed headers", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tinyfw-structs-" });
  try {
    await Deno.writeTextFile(`${dir}/structs.c`, program());
    const cc = await new Deno.Command("clang", {
      args: ["-Wall", "-Werror", "-o", `${dir}/structs`, `${dir}/structs.c`],
      stderr: "piped",
    }).output();
    assert.equal(cc.code, 0, new TextDecoder().decode(cc.stderr));
    const out = await new Deno.Command(`${dir}/structs`, { stdout: "piped" }).output();
    const seen = new Map<string, number>();
    for (const line of new TextDecoder().decode(out.stdout).trim().split("\n")) {
      const [name, field, value] = line.split(" ");
      seen.set(`${name} ${field}`, Number(value));
    }
    let checked = 0;
    for (const [name, s] of Object.entries(STRUCTS)) {
      assert.equal(s.size, seen.get(`${name} size`), `sizeof(struct ${name})`);
      for (const [field, offset] of Object.entries(s.fields)) {
        assert.equal(offset, seen.get(`${name} ${field}`), `offsetof(struct ${name}, ${field})`);
        checked++;
      }
    }
    assert.ok(checked >= 50, `only ${checked} fields`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
