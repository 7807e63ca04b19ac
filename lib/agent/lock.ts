/**
 * One agent per network namespace, and one per pin path. Two agents in one
 * namespace would take each other's programs: each treats a tinyfw program
 * it finds on an interface as left by a crashed run of its own and replaces
 * it, and in containers mode both filter every new veth. Two agents on one
 * pin path would share its maps. So `run` takes two exclusive locks first,
 * on files named after the namespace's identity and after the pin path; the
 * kernel drops them when the process ends, however it ends. A clean exit also
 * removes the files (a killed agent leaves them, empty of meaning, to the
 * next one). `tinyfw detach` refuses while the pin path's lock is held.
 *
 * @module
 */

import { RuntimeError } from "../base/mod.ts";
import { close, EWOULDBLOCK, flock, LOCK_EX, LOCK_NB, open, SysError } from "../ffi/mod.ts";

/** Where lock files live (tmpfs: gone at reboot with the programs they guarded). */
export const LOCK_DIR = "/run/tinyfw";

const O_RDWR = 2;

/** A held lock; `release` is for tests and clean exits (exiting releases it too). */
export interface AgentLock {
  readonly path: string;
  release(): void;
}

/**
 * Takes the lock of this process's network namespace, or throws a
 * RuntimeError naming the agent that holds it.
 */
export function lockNetns(dir = LOCK_DIR): AgentLock {
  return lockFile(
    netnsLockPath(dir),
    (pid) =>
      `Another tinyfw agent (pid ${pid}) is running in this network namespace; ` +
      `stop it first: two agents would take each other's filters.`,
  );
}

/** The lock file of this process's network namespace. */
export function netnsLockPath(dir = LOCK_DIR): string {
  return `${dir}/agent-netns-${Deno.statSync("/proc/self/ns/net").ino}.lock`;
}

/** The lock file of pin path `pinPath`. */
export function pinLockPath(pinPath: string, dir = LOCK_DIR): string {
  return `${dir}/pins${pinPath.replaceAll("/", "_")}.lock`;
}

/**
 * Takes the lock of pin path `pinPath`, or throws a RuntimeError naming the
 * agent that holds it.
 */
export function lockPinPath(pinPath: string, dir = LOCK_DIR): AgentLock {
  return lockFile(
    pinLockPath(pinPath, dir),
    (pid) =>
      `Another tinyfw agent (pid ${pid}) uses the pins under ${pinPath}; stop it first, or ` +
      `give this one another --pin-path: two agents would share their maps.`,
  );
}

/**
 * The pid of the agent holding the lock at `path`, or null when no process
 * holds it (tested by taking it for a moment).
 */
export function lockHolder(path: string): string | null {
  let fd: number;
  try {
    fd = open(path, O_RDWR);
  } catch {
    return null; // no file: no agent
  }
  try {
    flock(fd, LOCK_EX | LOCK_NB);
    return null;
  } catch (e) {
    if (e instanceof SysError && e.errno === EWOULDBLOCK) return readHolder(path);
    throw e;
  } finally {
    close(fd); // closing drops the lock we may have taken
  }
}

function lockFile(path: string, heldBy: (pid: string) => string): AgentLock {
  const dir = path.slice(0, path.lastIndexOf("/"));
  Deno.mkdirSync(dir, { recursive: true, mode: 0o755 });
  for (;;) {
    Deno.writeTextFileSync(path, "", { append: true, mode: 0o644 });
    const fd = open(path, O_RDWR);
    try {
      flock(fd, LOCK_EX | LOCK_NB);
    } catch (e) {
      close(fd);
      if (e instanceof SysError && e.errno === EWOULDBLOCK) {
        throw new RuntimeError(heldBy(readHolder(path)));
      }
      throw e;
    }
    // The holder we waited on may have removed the file on its way out: then
    // our lock is on a file nobody else can find, and we start over.
    if (!sameFile(path, fd)) {
      close(fd);
      continue;
    }
    Deno.writeTextFileSync(path, `${Deno.pid}\n`);
    let held = true;
    return {
      path,
      release() {
        if (!held) return;
        held = false;
        // Removed while still locked, so no one can lock it in between.
        Deno.removeSync(path);
        close(fd);
      },
    };
  }
}

/** Whether `path` still names the file open as `fd`. */
function sameFile(path: string, fd: number): boolean {
  try {
    return Deno.statSync(path).ino === Deno.statSync(`/proc/self/fd/${fd}`).ino;
  } catch {
    return false;
  }
}

function readHolder(path: string): string {
  try {
    return Deno.readTextFileSync(path).trim() || "unknown";
  } catch {
    return "unknown";
  }
}
