/**
 * Watches one file for changes, the way editors and config tools write it:
 * in place, or by writing a new file and renaming it over the old one (which
 * a watch on the file itself would miss). Watches the directory, filters by
 * name, waits for writes to settle, and reports only real content changes.
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
      for await (const event of watcher) {
        if (event.paths.some((p) => p === abs)) settle();
      }
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
