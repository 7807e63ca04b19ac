/**
 * One agent per network namespace. Two agents in one namespace would take
 * each other's programs: each treats a tinyfw program it finds on an
 * interface as left by a crashed run of its own and replaces it, and in
 * containers mode both filter every new veth. So `run` takes an exclusive
 * lock first, on a file named after the namespace's identity; the kernel
 * drops it when the process ends, however it ends. A clean exit also removes
 * the file (a killed agent leaves it, empty of meaning, to the next one).
 *
 * @module
 */

import { RuntimeError } from "./errors.ts";
import { close, EWOULDBLOCK, flock, LOCK_EX, LOCK_NB, open } from "./ffi/libc.ts";
import { SysError } from "./ffi/errors.ts";

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
  const st = Deno.statSync("/proc/self/ns/net");
  const path = `${dir}/agent-netns-${st.ino}.lock`;
  Deno.mkdirSync(dir, { recursive: true, mode: 0o755 });
  for (;;) {
    Deno.writeTextFileSync(path, "", { append: true, mode: 0o644 });
    const fd = open(path, O_RDWR);
    try {
      flock(fd, LOCK_EX | LOCK_NB);
    } catch (e) {
      close(fd);
      if (e instanceof SysError && e.errno === EWOULDBLOCK) {
        const holder = readHolder(path);
        throw new RuntimeError(
          `Another tinyfw agent (pid ${holder}) is running in this network namespace; ` +
            `stop it first: two agents would take each other's filters.`,
        );
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
