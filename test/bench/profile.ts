// Summarises a V8 CPU profile (.cpuprofile) into where the time went: self time by package or
// Beacon source directory, and time attributed to the nearest Beacon function on the stack (the
// "step" that caused it: accept, buffer, producer, a processor…), so a missed target can be
// traced to the step that costs it.
import { readFileSync } from "node:fs";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  totalMs: number;
  /** Percent of samples, largest first. */
  byPackage: [string, number][];
  byBeaconFrame: [string, number][];
  topSelf: [string, number][];
}

function packageOf(url: string, functionName: string): string {
  if (url === "") return functionName.startsWith("(") ? functionName : "(native/v8)";
  if (url.startsWith("node:")) return url.replace(/^node:internal\//, "node:").split("/").slice(0, 2).join("/");
  const nm = url.lastIndexOf("node_modules/");
  if (nm >= 0) {
    const rest = url.slice(nm + "node_modules/".length).split("/");
    return rest[0].startsWith("@") ? `${rest[0]}/${rest[1]}` : rest[0];
  }
  const repo = /\/(server|workers|gen|test|sdk)\/(.*)$/.exec(url);
  if (repo) return `${repo[1]}/${repo[2].split("/").slice(0, -1).join("/") || "."}`.replace(/\/\.$/, "");
  return url;
}

function isBeaconFrame(url: string): boolean {
  return url !== "" && !url.includes("node_modules/") && /\/(server|workers)\//.test(url);
}

function shortUrl(url: string): string {
  const m = /\/((server|workers|gen|test)\/.*)$/.exec(url);
  if (m) return m[1];
  const nm = url.lastIndexOf("node_modules/");
  return nm >= 0 ? url.slice(nm + "node_modules/".length) : url;
}

export function summariseProfile(file: string, top = 12): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const node of profile.nodes) {
    byId.set(node.id, node);
    for (const child of node.children ?? []) parent.set(child, node.id);
  }
  const selfUs = new Map<number, number>();
  let totalUs = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    selfUs.set(id, (selfUs.get(id) ?? 0) + dt);
    totalUs += dt;
  });
  // Idle time, and the inspector's own cost of profiling, are not the program's work.
  const notWork = (id: number) => {
    const frame = byId.get(id)?.callFrame;
    return frame?.functionName === "(idle)" || (frame?.url ?? "").startsWith("node:inspector");
  };
  const idleUs = [...selfUs].filter(([id]) => notWork(id)).reduce((a, [, us]) => a + us, 0);
  const busyUs = totalUs - idleUs;

  const pkg = new Map<string, number>();
  const beacon = new Map<string, number>();
  const self = new Map<string, number>();
  const nearest = new Map<number, string>();
  const nearestBeacon = (id: number): string => {
    const cached = nearest.get(id);
    if (cached !== undefined) return cached;
    let cur: number | undefined = id;
    let found = "(no Beacon frame: event loop, I/O, GC)";
    while (cur !== undefined) {
      const frame = byId.get(cur)!.callFrame;
      if (isBeaconFrame(frame.url)) {
        found = `${frame.functionName || "(anonymous)"} ${shortUrl(frame.url)}:${frame.lineNumber + 1}`;
        break;
      }
      cur = parent.get(cur);
    }
    nearest.set(id, found);
    return found;
  };
  for (const [id, us] of selfUs) {
    const frame = byId.get(id)!.callFrame;
    if (notWork(id)) continue;
    const p = packageOf(frame.url, frame.functionName);
    pkg.set(p, (pkg.get(p) ?? 0) + us);
    const b = nearestBeacon(id);
    beacon.set(b, (beacon.get(b) ?? 0) + us);
    const s = `${frame.functionName || "(anonymous)"} ${shortUrl(frame.url)}${frame.url ? `:${frame.lineNumber + 1}` : ""}`;
    self.set(s, (self.get(s) ?? 0) + us);
  }
  const ranked = (m: Map<string, number>) =>
    [...m].sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, us]) => [k, (us / Math.max(busyUs, 1)) * 100] as [string, number]);
  return { totalMs: busyUs / 1000, byPackage: ranked(pkg), byBeaconFrame: ranked(beacon), topSelf: ranked(self) };
}
