// The tenant. Every other record belongs to exactly one organisation, and every tenant table
// leads its keys with organisation_id or site_id so the schema can later be distributed (Citus).
import { defineEntity, p } from "@mikro-orm/core";
import { createdAt, updatedAt, uuidPrimaryKey, version } from "./columns.js";

export const OrganisationSchema = defineEntity({
  name: "Organisation",
  tableName: "organisations",
  properties: {
    id: uuidPrimaryKey(),
    name: p.text(),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
    version: version(),
  },
});

export class Organisation extends OrganisationSchema.class {}
OrganisationSchema.setClass(Organisation);
