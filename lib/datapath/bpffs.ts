/**
 * The BPF file system where tinyfw pins its maps (`--pin-path`, default
 * /sys/fs/bpf/tinyfw): checking it is mounted, making and removing the pin
 * directory, pinning and opening pinned programs.
 *
 * @module
 */

import { close, objGet, objPin, progInfo, statfsType } from "../ffi/mod.ts";

/** f_type of a bpffs mount (linux/magic.h). */
export const BPF_FS_MAGIC = 0xcafe4a11;

/** A pin directory that is not on a bpffs. */
export class BpffsNotMountedError extends Error {
  /** The existing directory that was checked. */
  readonly path: string;

  constructor(path: string) {
    super(
      `${path} is not on a BPF file system: mount one with 'mount -t bpf bpf ${path}' ` +
        `(or choose another --pin-path)`,
    );
    this.name = "BpffsNotMountedError";
    this.path = path;
  }
}

/** Whether the existing path `path` lies on a bpffs. */
export function isBpffs(path: string): boolean {
  return (statfsType(path) >>> 0) === BPF_FS_MAGIC;
}

function nearestExisting(path: string): string {
  let p = path.replace(/\/+$/, "") || "/";
  for (;;) {
    try {
      Deno.statSync(p);
      return p;
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound) || p === "/") throw e;
      p = p.slice(0, p.lastIndexOf("/")) || "/";
    }
  }
}

/**
 * Makes sure `dir` exists on a bpffs (creating it and its parents inside the
 * mount). Throws {@link BpffsNotMountedError} when its nearest existing
 * ancestor is not on a bpffs.
 */
export function ensurePinDir(dir: string): void {
  const existing = nearestExisting(dir);
  if (!isBpffs(existing)) throw new BpffsNotMountedError(existing);
  Deno.mkdirSync(dir, { recursive: true });
}

/** Removes `dir` and every pin below it; false if it did not exist. */
export function removePinDir(dir: string): boolean {
  try {
    Deno.removeSync(dir, { recursive: true });
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** Pins a program (or map, or link) fd at `path`. */
export function pin(fd: number, path: string): void {
  objPin(fd, path);
}

/** A new fd for the object pinned at `path`, or null if nothing is pinned there. */
export function openPinned(path: string): number | null {
  try {
    Deno.statSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  return objGet(path);
}

/** The id of the program pinned at `path`, or null if nothing is pinned there. */
export function pinnedProgramId(path: string): number | null {
  const fd = openPinned(path);
  if (fd === null) return null;
  try {
    return progInfo(fd).id;
  } finally {
    close(fd);
  }
}
