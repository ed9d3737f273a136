#!/usr/bin/env node
// The `beacon` command (`npx beacon …`). Beacon is TypeScript run through tsx, so this launcher
// registers tsx's loader and hands over to server/cli.ts. MikroORM 7 needs Node 22 or newer:
// started by an older node (the system one, say), it runs itself again with the Node the project
// installs as its `node` devDependency.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const args = process.argv.slice(2);

if (Number(process.versions.node.split(".")[0]) < 22) {
  let projectNode;
  try {
    projectNode = join(dirname(createRequire(import.meta.url).resolve("node/package.json")), "bin", "node");
  } catch {
    // not installed; reported below
  }
  if (!projectNode || !existsSync(projectNode)) {
    process.stderr.write(`beacon: needs Node 22 or newer (this is ${process.version}); run npm install, then npx beacon\n`);
    process.exit(1);
  }
  const child = spawnSync(projectNode, [fileURLToPath(import.meta.url), ...args], { stdio: "inherit" });
  process.exit(child.status ?? 1);
}

const { register } = await import("tsx/esm/api");
register();
const { runCli } = await import("../server/cli.ts");
process.exit(await runCli(args));
