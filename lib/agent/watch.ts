/**
 * Watches one file for changes, the way editors and config tools write it:
 * in place, by writing a new file and renaming it over the old one (which a
 * watch on the file itself would miss), or as a Kubernetes ConfigMap volume
 * changes it: the file is a symbolic link through `..data`, and the kubelet
 * swaps `..data` to a new timestamped directory, so no event names the file
 * at all. So any change in the file's directory is looked at: once writes
 * settle, the content (through the links) is compared with what it was, and
 * only a real change is reported.
 *
 * @module
 */

const SETTLE_MS = 200;

/** A running watch; {@link close} ends it. */
export interface FileWatch {
  close(): void;
}

async function digest(path: string): Promise<string | null> {
  try {
    const bytes = await Deno.readFile(path);
    const hash = await crypto.subtle.digest("SHA-256", bytes);
    return Array.from(new Uint8Array(hash), (b) => b.toString(16).padStart(2, "0")).join("");
  } catch {
    return null; // gone for a moment (replaced by rename); the next event settles it
  }
}

/** Calls `onChange` after the content of `path` changes (debounced by {@link SETTLE_MS}). */
export function watchFile(path: string, onChange: () => void): FileWatch {
  const abs = path.startsWith("/") ? path : `${Deno.cwd()}/${path}`;
  const dir = abs.slice(0, abs.lastIndexOf("/")) || "/";
  const watcher = Deno.watchFs(dir, { recursive: false });
  let timer: ReturnType<typeof setTimeout> | undefined;
  let last: Promise<string | null> = digest(abs);

  const settle = () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const before = await last;
      last = digest(abs);
      const now = await last;
      if (now !== null && now !== before) onChange();
    }, SETTLE_MS);
  };

  (async () => {
    try {
      for await (const _ of watcher) settle();
    } catch {
      // closed
    }
  })();

  return {
    close() {
      clearTimeout(timer);
      try {
        watcher.close();
      } catch {
        // already closed
      }
    },
  };
}
