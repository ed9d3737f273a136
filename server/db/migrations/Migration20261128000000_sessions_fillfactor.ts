// Session rows are updated by every event of their visit: partitions leave half of each page
// free so those updates stay on the page (HOT; see PARTITION_STORAGE in server/db/partitions.ts,
// which new partitions are created with). This sets the same on the partitions that exist: pages
// they fill from now on keep the room.
import { Migration } from "@mikro-orm/migrations";

const EACH_SESSIONS_PARTITION = (action: string) => `do $$
declare part regclass;
begin
  for part in select inhrelid::regclass from pg_inherits where inhparent = 'sessions'::regclass loop
    execute format('alter table %s ${action}', part);
  end loop;
end $$`;

export class Migration20261128000000_sessions_fillfactor extends Migration {
  override name = "Migration20261128000000_sessions_fillfactor";

  override up(): void {
    this.addSql(EACH_SESSIONS_PARTITION("set (fillfactor = 50)"));
  }

  override down(): void {
    this.addSql(EACH_SESSIONS_PARTITION("reset (fillfactor)"));
  }
}
