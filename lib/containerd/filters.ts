/**
 * containerd filter expressions (containerd's `filters` package), as the
 * Events/Subscribe request takes them: a list of filters, OR'd together,
 * each `fieldpath==value` clauses joined by `,` (AND). An empty list
 * matches every event, of every namespace.
 *
 * @module
 */

/**
 * A quoted filter value: double quotes, with the escapes of Go's
 * `strconv.Unquote` (which containerd's filter parser follows), so any
 * value is taken literally — including one that starts with `.`, `/` or `|`,
 * characters the filter scanner treats specially.
 */
export function quoteFilterValue(value: string): string {
  return JSON.stringify(value);
}

/**
 * The Events/Subscribe filters for a set of namespaces: one
 * `namespace=="NS"` per namespace (OR'd), none for all namespaces.
 */
export function namespaceFilters(namespaces: readonly string[] = []): string[] {
  return [...new Set(namespaces)].map((ns) => `namespace==${quoteFilterValue(ns)}`);
}
