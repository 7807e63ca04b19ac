/** The loader's CIDR fast paths (lib/net/cidr_parser.ts) against parseCidrDetailed, on random text. */
import assert from "node:assert/strict";
import { parseCidrDetailed } from "../../lib/net/cidr.ts";
import { parseIPv4Fast, parseIPv6Fast } from "../../lib/net/cidr_parser.ts";
import { mulberry32 } from "../helpers/gen.ts";

Deno.test("cidr: the fast paths give parseCidrDetailed's result whenever they accept the text", () => {
  const rnd = mulberry32(77);
  const int = (a: number, b: number) => a + Math.floor(rnd() * (b - a + 1));
  const v4 = () => {
    const n = rnd() < 0.9 ? 4 : int(2, 5);
    const parts = Array.from({ length: n }, () => {
      const v = String(int(0, rnd() < 0.9 ? 255 : 400));
      return rnd() < 0.05 ? "0" + v : v;
    });
    let s = parts.join(".");
    if (rnd() < 0.8) s += "/" + (rnd() < 0.05 ? "0" : "") + int(0, rnd() < 0.9 ? 32 : 40);
    return s;
  };
  const v6 = () => {
    const n = int(0, 9);
    const parts = Array.from({ length: n }, () => {
      let g = "";
      for (let j = rnd() < 0.95 ? int(1, 4) : 5; j > 0; j--) {
        g += "0123456789abcdefABCDEF"[int(0, 21)];
      }
      return rnd() < 0.2 ? "0" : g;
    });
    let s = parts.join(":");
    if (rnd() < 0.6) {
      const at = int(0, n);
      s = parts.slice(0, at).join(":") + "::" + parts.slice(at).join(":");
    }
    if (rnd() < 0.03) s = ":" + s;
    if (rnd() < 0.03) s += ":";
    if (rnd() < 0.8) s += "/" + (rnd() < 0.05 ? "0" : "") + int(0, rnd() < 0.9 ? 128 : 140);
    return s;
  };
  let accepted = 0;
  for (let t = 0; t < 100000; t++) {
    const text = t % 2 ? v4() : v6();
    const fast = text.includes(":") ? parseIPv6Fast(text) : parseIPv4Fast(text);
    if (!fast) continue;
    accepted++;
    assert.deepEqual(fast, parseCidrDetailed(text), text);
  }
  assert.ok(accepted > 40000, `${accepted} accepted`);
});
