import assert from "node:assert/strict";
import { RangeAllocator } from "../../lib/datapath/ranges.ts";

Deno.test("ranges: first fit, exhaustion, and freed neighbours merge", () => {
  const r = new RangeAllocator(100);
  assert.equal(r.allocate(30), 0);
  assert.equal(r.allocate(30), 30);
  assert.equal(r.allocate(30), 60);
  assert.equal(r.allocate(20), null, "only 10 left");
  assert.equal(r.available(), 10);
  r.free(30, 30);
  assert.equal(r.allocate(31), null, "the hole is 30 long");
  r.free(0, 30); // merges with [30, 60)
  assert.equal(r.allocate(55), 0);
  r.free(0, 55);
  r.free(60, 30); // [0, 100) again
  assert.equal(r.available(), 100);
  assert.equal(r.allocate(100), 0);
});
