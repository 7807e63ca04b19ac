/**
 * Writes bpf/tinyfw.h from lib/abi/layout.ts (lib/abi/header.ts renders it),
 * the one definition of every layout shared by the XDP program and user space.
 *
 *   deno run --allow-write=bpf scripts/gen-header.ts        # write bpf/tinyfw.h
 *   deno run scripts/gen-header.ts --stdout                 # print it
 */
import { renderHeader } from "../lib/abi/mod.ts";

if (import.meta.main) {
  const text = renderHeader();
  if (Deno.args.includes("--stdout")) {
    console.log(text);
  } else {
    const path = new URL("../bpf/tinyfw.h", import.meta.url);
    Deno.writeTextFileSync(path, text);
  }
}
