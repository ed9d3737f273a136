import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { classifyAgent } from "../../../server/core/enrich/bot.js";

// Real user-agent strings copied from public lists (isbot fixtures, monperrus/crawler-user-agents,
// ua-parser-js test data); each entry names the file it came from.
interface FixtureEntry {
  ua: string;
  bot: boolean;
  source: string;
}

const fixture = JSON.parse(
  readFileSync(new URL("../../fixtures/user-agents.json", import.meta.url), "utf8"),
) as FixtureEntry[];

const bots = fixture.filter((entry) => entry.bot);
const users = fixture.filter((entry) => !entry.bot);

describe("user-agent fixture", () => {
  it("holds at least 500 well-formed, unique entries", () => {
    expect(fixture.length).toBeGreaterThanOrEqual(500);
    for (const entry of fixture) {
      expect(typeof entry.ua).toBe("string");
      expect(entry.ua.trim()).not.toBe("");
      expect(typeof entry.bot).toBe("boolean");
      expect(typeof entry.source).toBe("string");
      expect(entry.source).not.toBe("");
    }
    expect(new Set(fixture.map((entry) => entry.ua)).size).toBe(fixture.length);
  });

  it("represents both labels well", () => {
    expect(bots.length).toBeGreaterThanOrEqual(200);
    expect(users.length).toBeGreaterThanOrEqual(200);
  });
});

describe("classifyAgent against the fixture", () => {
  it.each(bots.map((entry) => [entry.ua, entry.source] as const))("BOT: %s (from %s)", (ua) => {
    expect(classifyAgent(ua)).toBe("BOT");
  });

  it.each(users.map((entry) => [entry.ua, entry.source] as const))("USER: %s (from %s)", (ua) => {
    expect(classifyAgent(ua)).toBe("USER");
  });
});
