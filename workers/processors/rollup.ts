// The rollup tick: every minute, bring each site's hourly and daily rollups up to date (new
// complete hours, and hours that late events made dirty). Safe to run anywhere and twice: a roll
// replaces its rows and holds the site's watermark while it does.
import type { MikroORM } from "@mikro-orm/postgresql";
import type { Job } from "bullmq";
import { sqlPool } from "../../server/db/orm.js";
import { rollSite, sitesToRoll } from "../../server/db/rollups.js";
import type { Logger } from "../../server/logger.js";

export function createRollupProcessor(orm: MikroORM, logger: Logger) {
  return async (_job: Job): Promise<{ sites: number; hours: number; days: number }> => {
    const pool = await sqlPool(orm);
    const sites = await sitesToRoll(pool);
    let hours = 0;
    let days = 0;
    for (const site of sites) {
      const result = await rollSite(pool, site.id, site.timezone);
      hours += result.hours;
      days += result.days;
    }
    if (hours > 0) logger.debug("rollups updated", { sites: sites.length, hours, days });
    return { sites: sites.length, hours, days };
  };
}
