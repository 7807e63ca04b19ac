/**
 * What a valid name is, for the policy file and the command line alike:
 * policy and rule names, Linux interface names, containerd namespace names.
 *
 * @module
 */

/** Longest policy or rule name. */
export const MAX_NAME_LENGTH = 128;
/** Longest Linux interface name (IFNAMSIZ - 1). */
export const MAX_IFNAME_LENGTH = 15;
/** Longest containerd namespace name (containerd's identifiers.Validate). */
export const MAX_NAMESPACE_LENGTH = 76;

/**
 * Characters a name may not contain: controls, invisible formatting
 * characters (zero-width, bidi controls), lone surrogates, private-use and
 * unassigned code points, line and paragraph separators, and spaces other
 * than U+0020. Two names differing only in these would look the same in
 * logs and metrics, and a lone surrogate cannot even be written as UTF-8.
 */
const HIDDEN =
  /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]/u;

/**
 * Why `name` is not a valid policy or rule name (after its type is checked),
 * or undefined. `quoted` asks for the name itself at the start of the
 * message (the caller quotes it); otherwise the message stands alone.
 */
export function nameProblem(name: string): { message: string; quoted: boolean } | undefined {
  if (name === "") return { message: "must not be empty", quoted: false };
  if (name.length > MAX_NAME_LENGTH) {
    return {
      message: `is ${name.length} characters long; names have at most ${MAX_NAME_LENGTH}`,
      quoted: false,
    };
  }
  const hidden = HIDDEN.exec(name);
  if (hidden) {
    const cp = hidden[0].codePointAt(0)!;
    if (cp < 0x20 || cp === 0x7f) return { message: "contains a control character", quoted: true };
    return {
      message: `contains an invisible character (U+${
        cp.toString(16).toUpperCase().padStart(4, "0")
      }): names must be visible text, so that names that look alike are alike`,
      quoted: true,
    };
  }
  if (name.trim() !== name) return { message: "starts or ends with a space", quoted: true };
}

/**
 * The form two names are compared in to tell whether they look the same:
 * Unicode compatibility normalisation (NFKC), so that composed and
 * decomposed accents, or full-width letters, are the same name.
 */
export function lookalikeKey(name: string): string {
  return name.normalize("NFKC");
}

/** Why `name` is not a Linux interface name (dev_valid_name), or undefined. */
export function ifnameProblem(name: string): string | undefined {
  if (name === "") return "it is empty";
  if (new TextEncoder().encode(name).length > MAX_IFNAME_LENGTH) {
    return `it is longer than ${MAX_IFNAME_LENGTH} bytes`;
  }
  if (name === "." || name === "..") return `it is "${name}"`;
  if (/[*?[]/.test(name)) return "patterns are not supported: list the interfaces";
  if (/[/:\s]/.test(name)) return "it contains a slash, a colon or a space";
}

/** containerd's namespace name rule (identifiers.Validate): `[A-Za-z0-9]+` joined by `.`, `_`, `-`. */
export function isNamespaceName(name: string): boolean {
  return name.length <= MAX_NAMESPACE_LENGTH &&
    /^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$/.test(name);
}
