/**
 * Results of the cases that are not "events per second" rows (inv, read): each prints its own
 * table, then its notes; `--json` carries `data` instead.
 */
export interface Report {
  id: string;
  title: string;
  header: string[];
  rows: string[][];
  /** Columns (by index) aligned right: the numbers. */
  numeric: number[];
  /** Lines printed under the table: goals, warnings, what was checked. */
  notes: string[];
  /** Runs that did not complete (events never seen, errors): the exit code is then 1. */
  incomplete: string[];
  /** Everything measured, for --json. */
  data: unknown;
}

/** A Markdown-compatible table. */
export function formatTable(header: string[], rows: string[][], numeric: number[] = []): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const right = new Set(numeric);
  const fmt = (cells: string[]): string =>
    `| ${widths.map((w, i) => (right.has(i) ? (cells[i] ?? '').padStart(w) : (cells[i] ?? '').padEnd(w))).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (right.has(i) ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`;
  return [fmt(header), rule, ...rows.map(fmt)];
}

export function printReport(r: Report): void {
  console.log('');
  console.log(r.title);
  for (const line of formatTable(r.header, r.rows, r.numeric)) console.log(line);
  for (const note of r.notes) console.log(note);
  for (const inc of r.incomplete) console.log(`  ${r.id}: incomplete ${inc}`);
}

export const ms = (ns: number): string => (Number.isFinite(ns) ? (ns / 1e6).toFixed(2) : '-');
export const int = (v: number): string => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : '-');
export const pct = (v: number | undefined | null): string => (v === undefined || v === null || !Number.isFinite(v) ? '-' : `${Math.round(v)}%`);
