/**
 * Pins on bpffs: bpf_obj_pin and bpf_obj_get, for maps, programs and links.
 *
 * @module
 */

import { cString } from "../libc.ts";
import { call } from "./symbols.ts";

/** bpf_obj_pin: pins a map/program/link fd at a bpffs path. */
export function objPin(fd: number, path: string): void {
  call(`bpf_obj_pin ${path}`, (s) => s.bpf_obj_pin(fd, cString(path)));
}

/** bpf_obj_get: a new fd for the object pinned at `path`. */
export function objGet(path: string): number {
  return call(`bpf_obj_get ${path}`, (s) => s.bpf_obj_get(cString(path)));
}
