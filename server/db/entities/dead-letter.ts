// An event batch ingestion gave up on, kept for inspection and replay. No foreign key: a dead
// letter must be storable even when its site has gone.
import { defineEntity, p } from "@mikro-orm/core";
import { createdAt, uuidPrimaryKey } from "./columns.js";

export const DeadLetterSchema = defineEntity({
  name: "DeadLetter",
  tableName: "dead_letters",
  properties: {
    siteId: p.uuid(),
    id: uuidPrimaryKey(),
    /** Machine-readable reason, e.g. `schema_mismatch`. */
    reason: p.text(),
    payload: p.json<unknown>(),
    attempts: p.integer(),
    createdAt: createdAt(),
  },
  indexes: [{ properties: ["siteId", "createdAt"] }],
});

export class DeadLetter extends DeadLetterSchema.class {}
DeadLetterSchema.setClass(DeadLetter);
