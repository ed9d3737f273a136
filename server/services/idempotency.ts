// Safe retries of creates (AIP-155): a request id (the request's `request_id` field or the
// `Idempotency-Key` header) makes a retry return the first response instead of creating twice.
// The response is stored in the same transaction as the create, so either both exist or neither.
import { createHash } from "node:crypto";
import { type DescMessage, fromBinary, type MessageShape, toBinary, toJsonString } from "@bufbuild/protobuf";
import type { HandlerContext } from "@connectrpc/connect";
import type { EntityManager, MikroORM } from "@mikro-orm/postgresql";
import { IdempotencyRecord } from "../db/entities/index.js";
import { InvalidArgumentError } from "../core/errors.js";
import type { Principal } from "../core/roles.js";

export interface IdempotentCall<Req extends DescMessage, Res extends DescMessage> {
  ctx: HandlerContext;
  principal: Principal;
  requestSchema: Req;
  request: MessageShape<Req> & { requestId: string };
  responseSchema: Res;
  /** What to store for replay, when it must differ from what the first caller gets (secrets). */
  stored?: (response: MessageShape<Res>) => MessageShape<Res>;
}

export class Idempotency {
  constructor(private readonly orm: MikroORM) {}

  async run<Req extends DescMessage, Res extends DescMessage>(
    call: IdempotentCall<Req, Res>,
    create: (em: EntityManager) => Promise<MessageShape<Res>>,
  ): Promise<MessageShape<Res>> {
    const key = (call.request.requestId || call.ctx.requestHeader.get("idempotency-key") || "").trim();
    const em = this.orm.em.fork();
    if (key === "") return em.transactional(create);
    if (key.length > 200) throw new InvalidArgumentError("request_id", "must be at most 200 characters");
    const method = call.ctx.method.name;
    const organisationId = call.principal.organisationId;
    const requestHash = createHash("sha256")
      .update(toJsonString(call.requestSchema, { ...call.request, requestId: "" } as MessageShape<Req>))
      .digest("hex");
    const replay = async (): Promise<MessageShape<Res> | undefined> => {
      const record = await this.orm.em.fork().findOne(IdempotencyRecord, { organisationId, method, key });
      if (!record) return undefined;
      if (record.requestHash !== requestHash) {
        throw new InvalidArgumentError("request_id", "was already used for a different request");
      }
      return fromBinary(call.responseSchema, new Uint8Array(record.response));
    };
    const earlier = await replay();
    if (earlier) return earlier;
    try {
      return await em.transactional(async (tx) => {
        const response = await create(tx);
        const stored = call.stored ? call.stored(response) : response;
        tx.create(IdempotencyRecord, { organisationId, method, key, requestHash, response: Buffer.from(toBinary(call.responseSchema, stored)) });
        await tx.flush();
        return response;
      });
    } catch (err) {
      // A concurrent retry with the same id may have won the race. Ours then fails on the record's
      // unique key, or earlier on a unique field of the resource itself (a site's domain, which
      // the core reports as AlreadyExists): either way, answer with the winner's result.
      const winner = await replay();
      if (winner) return winner;
      throw err;
    }
  }
}
