// Secrets every Beacon process must share without configuration: the key behind visitor-id
// hashes. Kept in Postgres (raw SQL, outside the ORM) because it must survive restarts and be
// the same for every server and worker.
import { Migration } from "@mikro-orm/migrations";

export class Migration20261123000000_instance_secrets extends Migration {
  override name = "Migration20261123000000_instance_secrets";

  override up(): void {
    this.addSql(`create table instance_secrets (name text primary key, value text not null, created_at timestamptz not null default now())`);
  }

  override down(): void {
    this.addSql(`drop table if exists instance_secrets`);
  }
}
