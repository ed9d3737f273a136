// Reads the nice value of every thread of a process from /proc (Linux), to check CPU priorities.
import { readdirSync, readFileSync } from "node:fs";

/** The nice value of each thread of process `pid`, by thread id. */
export function threadNiceValues(pid: number): Map<number, number> {
  const values = new Map<number, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
    } catch {
      continue; // The thread ended after the listing.
    }
    // "pid (comm) state ppid …": comm may hold spaces and parentheses, so count from the last
    // ")". Nice is field 19; after the ")" come fields 3 onwards.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    values.set(Number(tid), Number(fields[19 - 3]));
  }
  return values;
}
