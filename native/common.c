// Helpers shared by the addon's parts: errors, arguments, socket addresses.
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "addon.h"

// The errno names callers branch on (Node's `code`); others read as "E<number>".
static const char *errno_name(int err) {
  switch (err) {
    case EADDRINUSE: return "EADDRINUSE";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case EINVAL: return "EINVAL";
    case ENOMEM: return "ENOMEM";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    default: return NULL;
  }
}

napi_value throw_errno(napi_env env, const char *what, int err) {
  char message[160];
  char fallback[16];
  const char *name = errno_name(err);
  if (name == NULL) {
    snprintf(fallback, sizeof fallback, "E%d", err);
    name = fallback;
  }
  snprintf(message, sizeof message, "%s %s: %s", what, name, strerror(err));
  napi_value code, text, error, errno_value;
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &text);
  napi_create_error(env, code, text, &error);
  napi_create_int32(env, err, &errno_value);
  napi_set_named_property(env, error, "errno", errno_value);
  napi_throw(env, error);
  return NULL;
}

napi_value throw_type(napi_env env, const char *message) {
  napi_throw_type_error(env, NULL, message);
  return NULL;
}

int arg_int(napi_env env, napi_value value, int32_t *out) {
  return napi_get_value_int32(env, value, out) == napi_ok;
}

static int arg_string(napi_env env, napi_value value, char *out, size_t size) {
  size_t length;
  return napi_get_value_string_utf8(env, value, out, size, &length) == napi_ok;
}

// Fills `out` from text address + port; returns its length, or 0 when the text is no address.
static socklen_t to_sockaddr(const char *address, int port, struct sockaddr_storage *out) {
  memset(out, 0, sizeof *out);
  struct sockaddr_in *v4 = (struct sockaddr_in *)out;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
  if (inet_pton(AF_INET, address, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons((uint16_t)port);
    return sizeof *v4;
  }
  if (inet_pton(AF_INET6, address, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons((uint16_t)port);
    return sizeof *v6;
  }
  return 0;
}

// { address, port } of a socket address, or undefined for a family we do not speak.
napi_value from_sockaddr(napi_env env, const struct sockaddr_storage *address) {
  char text[INET6_ADDRSTRLEN] = {0};
  int port;
  if (address->ss_family == AF_INET) {
    const struct sockaddr_in *v4 = (const struct sockaddr_in *)address;
    inet_ntop(AF_INET, &v4->sin_addr, text, sizeof text);
    port = ntohs(v4->sin_port);
  } else if (address->ss_family == AF_INET6) {
    const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)address;
    inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text);
    port = ntohs(v6->sin6_port);
  } else {
    napi_value undefined;
    napi_get_undefined(env, &undefined);
    return undefined;
  }
  napi_value result, address_value, port_value;
  napi_create_object(env, &result);
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &address_value);
  napi_create_int32(env, port, &port_value);
  napi_set_named_property(env, result, "address", address_value);
  napi_set_named_property(env, result, "port", port_value);
  return result;
}


socklen_t arg_endpoint(napi_env env, napi_value address, napi_value port, struct sockaddr_storage *out) {
  char text[64];
  int32_t number;
  if (!arg_string(env, address, text, sizeof text) || !arg_int(env, port, &number) || number < 0 || number > 65535) return 0;
  return to_sockaddr(text, number, out);
}

napi_value send_datagram(napi_env env, int fd, size_t argc, napi_value *argv) {
  void *data;
  size_t size;
  struct sockaddr_storage peer;
  socklen_t length = argc < 3 || napi_get_buffer_info(env, argv[0], &data, &size) != napi_ok ? 0 : arg_endpoint(env, argv[1], argv[2], &peer);
  if (length == 0) return throw_type(env, "send(data, address, port): a Buffer, an IP address and a port");
  ssize_t sent = fd < 0 ? -1 : sendto(fd, data, size, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&peer, length);
  napi_value result;
  napi_get_boolean(env, sent == (ssize_t)size, &result);
  return result;
}

napi_value local_address(napi_env env, int fd) {
  struct sockaddr_storage local;
  socklen_t length = sizeof local;
  if (fd < 0) return throw_errno(env, "getsockname", EINVAL);
  if (getsockname(fd, (struct sockaddr *)&local, &length) != 0) return throw_errno(env, "getsockname", errno);
  return from_sockaddr(env, &local);
}
