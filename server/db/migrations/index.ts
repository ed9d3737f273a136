// The committed migrations, oldest first. `make-migration.ts` writes a new file next to this
// one; add it at the end of this list. Names are stored in mikro_orm_migrations: never rename.
import type { Constructor } from "@mikro-orm/core";
import type { Migration } from "@mikro-orm/migrations";
import { Migration20261122232242_records } from "./Migration20261122232242_records.js";
import { Migration20261122232300_events } from "./Migration20261122232300_events.js";
import { Migration20261123000000_instance_secrets } from "./Migration20261123000000_instance_secrets.js";
import { Migration20261124000000_metrics } from "./Migration20261124000000_metrics.js";
import { Migration20261123010000_rollups } from "./Migration20261123010000_rollups.js";
import { Migration20261125000000_subscriptions } from "./Migration20261125000000_subscriptions.js";
import { Migration20261126000000_session_page_times } from "./Migration20261126000000_session_page_times.js";
import { Migration20261127000000_rollup_blocks } from "./Migration20261127000000_rollup_blocks.js";
import { Migration20261128000000_sessions_fillfactor } from "./Migration20261128000000_sessions_fillfactor.js";

export const migrations: { name: string; class: Constructor<Migration> }[] = [
  { name: "Migration20261122232242_records", class: Migration20261122232242_records },
  { name: "Migration20261122232300_events", class: Migration20261122232300_events },
  { name: "Migration20261123000000_instance_secrets", class: Migration20261123000000_instance_secrets },
  { name: "Migration20261124000000_metrics", class: Migration20261124000000_metrics },
  { name: "Migration20261123010000_rollups", class: Migration20261123010000_rollups },
  { name: "Migration20261125000000_subscriptions", class: Migration20261125000000_subscriptions },
  { name: "Migration20261126000000_session_page_times", class: Migration20261126000000_session_page_times },
  { name: "Migration20261127000000_rollup_blocks", class: Migration20261127000000_rollup_blocks },
  { name: "Migration20261128000000_sessions_fillfactor", class: Migration20261128000000_sessions_fillfactor },
];
