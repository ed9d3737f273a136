// What every part of `npm run bench` shares: its knobs, percentiles, and the tables and sections
// it writes into docs/benchmarks.md.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository's root directory. */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/** A positive number (or zero, where `zeroMeansNone`) from the environment, or `fallback` when unset. */
export function envNumber(name: string, fallback: number, zeroMeansNone = false): number {
  const raw = process.env[name];
  const value = raw === undefined || raw === "" ? fallback : Number(raw);
  if (!Number.isFinite(value) || value < 0 || (value === 0 && !zeroMeansNone)) throw new Error(`${name} must be a positive number${zeroMeansNone ? " or 0" : ""}, got "${raw}"`);
  return value;
}

/** Nearest-rank percentile `p` (0–100) of samples sorted ascending; NaN when there are none. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

/** A Markdown table, columns padded to their widest cell. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => (c ?? "").padEnd(widths[i])).join(" | ")} |`;
  return [line(header), `| ${widths.map((w) => "-".repeat(w)).join(" | ")} |`, ...rows.map(line)].join("\n");
}

/**
 * Replaces (or appends) the `## <title>` section of docs/benchmarks.md, keeping every other
 * section: each part of the bench (ingestion, metrics, realtime, reports) writes its own.
 */
export function writeDocSection(title: string, section: string, path = join(repoRoot, "docs/benchmarks.md")): void {
  const body = `${section.trimEnd()}\n`;
  if (!existsSync(path)) {
    writeFileSync(path, `# Benchmarks\n\n${body}`);
    return;
  }
  const lines = readFileSync(path, "utf8").split("\n");
  const heading = new RegExp(`^## ${title.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\s*$`);
  const start = lines.findIndex((l) => heading.test(l));
  if (start < 0) {
    writeFileSync(path, `${lines.join("\n").trimEnd()}\n\n${body}`);
    return;
  }
  let end = lines.findIndex((l, i) => i > start && /^## /.test(l));
  if (end < 0) end = lines.length;
  const before = lines.slice(0, start).join("\n").trimEnd();
  const after = lines.slice(end).join("\n").trim();
  writeFileSync(path, `${before}\n\n${body}${after ? `\n${after}\n` : ""}`);
}
