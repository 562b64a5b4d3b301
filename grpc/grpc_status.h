/* The gRPC status codes (grpc/doc/statuscodes.md), shared by the gateway,
 * the client and the supervisor. The names keep the gateway's historical
 * gw_status spelling (they are constants, no symbol of any binary). */
#ifndef GRPC_STATUS_H
#define GRPC_STATUS_H

/* gRPC status codes (grpc/doc/statuscodes.md). */
enum gw_status {
    GW_STATUS_OK = 0,
    GW_STATUS_CANCELLED = 1,
    GW_STATUS_UNKNOWN = 2,
    GW_STATUS_INVALID_ARGUMENT = 3,
    GW_STATUS_DEADLINE_EXCEEDED = 4,
    GW_STATUS_NOT_FOUND = 5,
    GW_STATUS_ALREADY_EXISTS = 6,
    GW_STATUS_PERMISSION_DENIED = 7,
    GW_STATUS_RESOURCE_EXHAUSTED = 8,
    GW_STATUS_FAILED_PRECONDITION = 9,
    GW_STATUS_ABORTED = 10,
    GW_STATUS_OUT_OF_RANGE = 11,
    GW_STATUS_UNIMPLEMENTED = 12,
    GW_STATUS_INTERNAL = 13,
    GW_STATUS_UNAVAILABLE = 14,
    GW_STATUS_DATA_LOSS = 15,
    GW_STATUS_UNAUTHENTICATED = 16,
};

#endif
