// When a visit's entry and exit pageviews happened, so batches stored out of order (concurrent
// ingest workers, retries) still leave the earliest pageview as entry and the latest as exit.
import { Migration } from "@mikro-orm/migrations";

export class Migration20261126000000_session_page_times extends Migration {
  override name = "Migration20261126000000_session_page_times";

  override up(): void {
    this.addSql(`alter table sessions add column entry_at timestamptz, add column exit_at timestamptz`);
  }

  override down(): void {
    this.addSql(`alter table sessions drop column entry_at, drop column exit_at`);
  }
}
