// Keyset pagination over (created_at, id) for every list: stable under concurrent inserts, and a
// page costs the same however deep it is.
import type { EntityManager, FilterQuery } from "@mikro-orm/postgresql";
import { decodePageToken, encodePageToken, pageSize } from "../page-token.js";

export interface Page<T> {
  items: T[];
  nextPageToken: string;
}

type Listable = { id: string; createdAt: Date };

/**
 * Lists `entity` rows matching `where`, oldest first (`newestFirst` reverses), one page at a time.
 */
export async function listPage<T extends Listable>(
  em: EntityManager,
  entity: new (...args: never[]) => T,
  where: FilterQuery<T>,
  request: { pageSize: number; pageToken: string },
  newestFirst = false,
): Promise<Page<T>> {
  const size = pageSize(request.pageSize);
  const cursor = decodePageToken(request.pageToken);
  const op = newestFirst ? "$lt" : "$gt";
  const conditions: unknown[] = [where];
  if (cursor) {
    const after = new Date(String(cursor.after));
    conditions.push({ $or: [{ createdAt: { [op]: after } }, { createdAt: after, id: { [op]: cursor.id } }] });
  }
  const direction = newestFirst ? "desc" : "asc";
  const rows = await em.find(entity, { $and: conditions } as FilterQuery<T>, {
    orderBy: { createdAt: direction, id: direction } as never,
    limit: size + 1,
  });
  const items = rows.slice(0, size);
  const last = items[items.length - 1];
  const nextPageToken = rows.length > size && last ? encodePageToken({ after: last.createdAt.toISOString(), id: last.id }) : "";
  return { items, nextPageToken };
}
