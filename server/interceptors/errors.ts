// The one place domain errors become Connect errors. Every service throws core errors; this maps
// them to codes with an ErrorDetail naming the field, and turns anything unexpected into Internal
// without echoing driver messages (which can leak SQL or hostnames) to the caller.
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { ErrorDetailSchema } from "../../gen/beacon/v1/common_pb.js";
import { BeaconError, type ErrorReason } from "../core/errors.js";
import type { Logger } from "../logger.js";

const CODE_OF: Record<ErrorReason, Code> = {
  INVALID_FIELD: Code.InvalidArgument,
  NOT_FOUND: Code.NotFound,
  ALREADY_EXISTS: Code.AlreadyExists,
  STALE_ETAG: Code.Aborted,
  UNAUTHENTICATED: Code.Unauthenticated,
  PERMISSION_DENIED: Code.PermissionDenied,
  RATE_LIMITED: Code.ResourceExhausted,
  PAYLOAD_TOO_LARGE: Code.ResourceExhausted,
  QUOTA_EXCEEDED: Code.ResourceExhausted,
  UNAVAILABLE: Code.Unavailable,
};

export function toConnectError(err: unknown, logger?: Logger): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof BeaconError) {
    const detail = create(ErrorDetailSchema, { reason: err.reason, field: err.field, metadata: err.metadata });
    return new ConnectError(err.message, CODE_OF[err.reason], undefined, [{ desc: ErrorDetailSchema, value: detail }], err);
  }
  logger?.error("internal error", { err: err instanceof Error ? (err.stack ?? err.message) : String(err) });
  return new ConnectError("internal error", Code.Internal, undefined, undefined, err);
}

export function createErrorInterceptor(logger: Logger): Interceptor {
  return (next) => async (req) => {
    try {
      const res = await next(req);
      if (!res.stream) return res;
      // Server streams fail while they are read; map those errors too.
      const source = res.message;
      return {
        ...res,
        message: (async function* () {
          try {
            yield* source;
          } catch (err) {
            throw toConnectError(err, logger);
          }
        })(),
      };
    } catch (err) {
      throw toConnectError(err, logger);
    }
  };
}
