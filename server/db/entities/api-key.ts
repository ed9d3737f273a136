// An API key. Only its sha256 is stored: the key itself is shown once, at creation.
import { defineEntity, p } from "@mikro-orm/core";
import { createdAt, uuidPrimaryKey, version } from "./columns.js";
import { Organisation } from "./organisation.js";

export const API_KEY_ROLES = ["viewer", "analyst", "admin"] as const;
export type ApiKeyRole = (typeof API_KEY_ROLES)[number];

export const ApiKeySchema = defineEntity({
  name: "ApiKey",
  tableName: "api_keys",
  properties: {
    organisationId: () => p.manyToOne(Organisation).mapToPk().fieldName("organisation_id"),
    id: uuidPrimaryKey(),
    name: p.text(),
    /** The key's first 8 characters, so a user can tell keys apart without seeing them. */
    prefix: p.text(),
    /** Lowercase hex sha256 of the whole key; the lookup on every authenticated request. */
    hash: p.text().unique(),
    role: p.enum(API_KEY_ROLES),
    /** Sites the key may use; empty means every site of the organisation. */
    siteIds: p.array().columnType("uuid[]").onCreate(() => []),
    createdAt: createdAt(),
    lastUsedAt: p.datetime().nullable(),
    revokedAt: p.datetime().nullable(),
    version: version(),
  },
  indexes: [{ properties: ["organisationId", "id"] }],
});

export class ApiKey extends ApiKeySchema.class {}
ApiKeySchema.setClass(ApiKey);
