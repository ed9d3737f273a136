// Column builders every record shares, so ids, timestamps and etag versions behave the same in
// every table.
import { randomUUID } from "node:crypto";
import { p } from "@mikro-orm/core";

/** A uuid primary key, assigned in `em.create()` so callers know the id before the flush. */
export const uuidPrimaryKey = () => p.uuid().primary().onCreate(() => randomUUID());

/** Set once when the record is created. */
export const createdAt = () => p.datetime().onCreate(() => new Date());

/** Set on creation and on every update MikroORM flushes. */
export const updatedAt = () =>
  p
    .datetime()
    .onCreate(() => new Date())
    .onUpdate(() => new Date());

/**
 * Optimistic-lock version: MikroORM adds it to the WHERE of every update and bumps it, so a
 * write based on a stale read fails instead of overwriting. It is also the resource's etag.
 */
export const version = () => p.integer().version();
