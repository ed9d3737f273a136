// The stored response of a write made with a request id, so a retry gets the same answer instead
// of repeating the write (AIP-155).
import { defineEntity, p } from "@mikro-orm/core";
import { createdAt } from "./columns.js";

export const IdempotencyRecordSchema = defineEntity({
  name: "IdempotencyRecord",
  tableName: "idempotency_records",
  properties: {
    organisationId: p.uuid().primary(),
    /** The RPC, e.g. `beacon.v1.SiteService/CreateSite`: one request id may be reused across methods. */
    method: p.text().primary(),
    /** The caller's request id. */
    key: p.text().primary(),
    /** Hash of the request, so reusing a request id for a different request is refused. */
    requestHash: p.text(),
    /** The serialised response message, replayed verbatim. */
    response: p.blob(),
    createdAt: createdAt(),
  },
  primaryKeys: ["organisationId", "method", "key"],
});

export class IdempotencyRecord extends IdempotencyRecordSchema.class {}
IdempotencyRecordSchema.setClass(IdempotencyRecord);
