/** bpf/tinyfw.h is what lib/abi/layout.ts renders (scripts/gen-header.ts writes it). */
import assert from "node:assert/strict";
import { renderHeader } from "../../lib/abi/header.ts";

Deno.test("abi: the committed bpf/tinyfw.h equals what layout.ts renders", () => {
  const committed = Deno.readTextFileSync(new URL("../../bpf/tinyfw.h", import.meta.url));
  assert.equal(committed, renderHeader(), "run 'deno task build:bpf' and commit bpf/tinyfw.h");
});
