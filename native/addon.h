// The native addon: socket operations Node's net and dgram modules do not offer.
// Plain Node-API and libuv (no C++ wrapper library), so it builds with the toolchain and
// headers a Node installation already has.
#ifndef PORTCULLIS_ADDON_H
#define PORTCULLIS_ADDON_H

#include <netinet/in.h>
#include <node_api.h>
#include <sys/socket.h>

napi_value throw_errno(napi_env env, const char *what, int err);
napi_value throw_type(napi_env env, const char *message);
int arg_int(napi_env env, napi_value value, int32_t *out);
// The socket address of an (address text, port number) argument pair; 0 when either is invalid.
socklen_t arg_endpoint(napi_env env, napi_value address, napi_value port, struct sockaddr_storage *out);
// send(data, address, port) on `fd` -> true when the kernel took the datagram, false when it
// did not (a full buffer, an unreachable peer: UDP's loss, not the caller's error).
napi_value send_datagram(napi_env env, int fd, size_t argc, napi_value *argv);
// { address, port } the socket `fd` is bound to.
napi_value local_address(napi_env env, int fd);
// { address, port } of a socket address, or undefined for a family we do not speak.
napi_value from_sockaddr(napi_env env, const struct sockaddr_storage *address);

void register_transparent(napi_env env, napi_value exports);
void register_udp_batch(napi_env env, napi_value exports);

#endif
