// Socket options Node's net and dgram modules do not expose, for the transparent gateway:
//
// - originalDestination(fd): where a connection redirected by nftables (REDIRECT/DNAT) was
//   going, from conntrack (SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST).
// - setTransparent(fd, family): IP_TRANSPARENT on a listening TCP socket, so nftables TPROXY
//   may hand it connections for any address (the accepted socket's local address is then the
//   original destination).
// - UdpSocket: a UDP socket with IP_TRANSPARENT that reports each datagram's original
//   destination (IP_RECVORIGDSTADDR, which needs recvmsg ancillary data) and may be bound to
//   an address that is not local: the listener behind a TPROXY rule, and the per-flow socket
//   that answers a client from the address it meant to reach.
//
// Linux only; binding.gyp builds nothing elsewhere and the gateway refuses transparent mode there.

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6/ip6_tables.h>
#include <netinet/in.h>
#include <node_api.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "addon.h"

#ifndef IP_RECVORIGDSTADDR
#define IP_RECVORIGDSTADDR 20
#endif
#ifndef IPV6_RECVORIGDSTADDR
#define IPV6_RECVORIGDSTADDR 74
#endif
#ifndef IP_ORIGDSTADDR
#define IP_ORIGDSTADDR IP_RECVORIGDSTADDR
#endif
#ifndef IPV6_ORIGDSTADDR
#define IPV6_ORIGDSTADDR IPV6_RECVORIGDSTADDR
#endif

// The largest UDP payload; a datagram is read whole into this and copied out at its size.
#define MAX_DATAGRAM 65535
// Datagrams read per readiness event before yielding to the event loop.
#define READ_BATCH 64

// originalDestination(fd, family) -> { address, port } | null (null: no NAT entry, i.e. the
// connection was not redirected).
static napi_value original_destination(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd, family;
  if (argc < 2 || !arg_int(env, argv[0], &fd) || !arg_int(env, argv[1], &family)) return throw_type(env, "originalDestination(fd, family)");
  struct sockaddr_storage address;
  socklen_t length = sizeof address;
  memset(&address, 0, sizeof address);
  int rc = family == 6 ? getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &address, &length)
                       : getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &address, &length);
  if (rc != 0) {
    if (errno == ENOENT || errno == ENOPROTOOPT) {
      napi_value null_value;
      napi_get_null(env, &null_value);
      return null_value;
    }
    return throw_errno(env, "getsockopt(SO_ORIGINAL_DST)", errno);
  }
  return from_sockaddr(env, &address);
}

static int set_transparent_fd(int fd, int family) {
  int on = 1;
  if (family == 6) return setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &on, sizeof on);
  return setsockopt(fd, SOL_IP, IP_TRANSPARENT, &on, sizeof on);
}

// setTransparent(fd, family): needs CAP_NET_ADMIN.
static napi_value set_transparent(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd, family;
  if (argc < 2 || !arg_int(env, argv[0], &fd) || !arg_int(env, argv[1], &family)) return throw_type(env, "setTransparent(fd, family)");
  if (set_transparent_fd(fd, family) != 0) return throw_errno(env, "setsockopt(IP_TRANSPARENT)", errno);
  return NULL;
}

// ---- UdpSocket ------------------------------------------------------------------------------

typedef struct {
  napi_env env;
  int fd;
  int family;
  uv_poll_t poll;
  int is_polling;
  int is_closed;
  napi_ref on_message;
  napi_ref self;
  napi_async_context context;
  unsigned char *buffer;
} UdpSocket;

static void poll_closed(uv_handle_t *handle) {
  UdpSocket *sock = (UdpSocket *)handle->data;
  free(sock->buffer);
  free(sock);
}

static void udp_release(UdpSocket *sock) {
  if (sock->is_closed) return;
  sock->is_closed = 1;
  napi_env env = sock->env;
  if (sock->on_message != NULL) napi_delete_reference(env, sock->on_message);
  if (sock->context != NULL) napi_async_destroy(env, sock->context);
  sock->on_message = NULL;
  sock->context = NULL;
  if (sock->self != NULL) {
    napi_delete_reference(env, sock->self);
    sock->self = NULL;
  }
  if (sock->is_polling) {
    uv_poll_stop(&sock->poll);
    close(sock->fd);
    // libuv still owns the poll handle until its close callback has run.
    uv_close((uv_handle_t *)&sock->poll, poll_closed);
  } else {
    close(sock->fd);
    free(sock->buffer);
    free(sock);
  }
}

// Reads the original destination out of recvmsg's control messages.
static int read_original_destination(struct msghdr *message, struct sockaddr_storage *out) {
  for (struct cmsghdr *c = CMSG_FIRSTHDR(message); c != NULL; c = CMSG_NXTHDR(message, c)) {
    if ((c->cmsg_level == SOL_IP && c->cmsg_type == IP_ORIGDSTADDR) || (c->cmsg_level == SOL_IPV6 && c->cmsg_type == IPV6_ORIGDSTADDR)) {
      size_t length = c->cmsg_len - CMSG_LEN(0);
      if (length > sizeof *out) length = sizeof *out;
      memset(out, 0, sizeof *out);
      memcpy(out, CMSG_DATA(c), length);
      return 1;
    }
  }
  return 0;
}

static void on_readable(uv_poll_t *handle, int status, int events) {
  (void)events;
  UdpSocket *sock = (UdpSocket *)handle->data;
  if (sock->is_closed || status < 0) return;
  napi_env env = sock->env;
  for (int i = 0; i < READ_BATCH && !sock->is_closed; i++) {
    struct sockaddr_storage source;
    struct iovec vector = {.iov_base = sock->buffer, .iov_len = MAX_DATAGRAM};
    unsigned char control[256];
    struct msghdr message = {
        .msg_name = &source, .msg_namelen = sizeof source, .msg_iov = &vector, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
    ssize_t size = recvmsg(sock->fd, &message, MSG_DONTWAIT);
    if (size < 0) return;  // EAGAIN: drained; anything else is a per-datagram error UDP ignores.
    struct sockaddr_storage destination;
    int has_destination = read_original_destination(&message, &destination);

    napi_handle_scope scope;
    napi_open_handle_scope(env, &scope);
    napi_value data, callback, self, argv[3], result;
    void *bytes;
    napi_create_buffer_copy(env, (size_t)size, sock->buffer, &bytes, &data);
    argv[0] = data;
    argv[1] = from_sockaddr(env, &source);
    if (has_destination) argv[2] = from_sockaddr(env, &destination);
    else napi_get_null(env, &argv[2]);
    napi_get_reference_value(env, sock->on_message, &callback);
    napi_get_reference_value(env, sock->self, &self);
    napi_status called = napi_make_callback(env, sock->context, self, callback, 3, argv, &result);
    if (called == napi_pending_exception) {
      napi_value exception;
      napi_get_and_clear_last_exception(env, &exception);
      napi_fatal_exception(env, exception);
    }
    napi_close_handle_scope(env, scope);
  }
}

static UdpSocket *unwrap(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
  napi_value self;
  void *data = NULL;
  napi_get_cb_info(env, info, argc, argv, &self, NULL);
  if (napi_unwrap(env, self, &data) != napi_ok || data == NULL) {
    napi_throw_error(env, NULL, "UdpSocket is closed");
    return NULL;
  }
  UdpSocket *sock = (UdpSocket *)data;
  if (sock->is_closed) {
    napi_throw_error(env, NULL, "UdpSocket is closed");
    return NULL;
  }
  return sock;
}

// new UdpSocket(address, port, onMessage(data, source, originalDestination))
// Binds with IP_TRANSPARENT (any address, local or not), SO_REUSEADDR and IP_RECVORIGDSTADDR.
static napi_value udp_new(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], self;
  napi_get_cb_info(env, info, &argc, argv, &self, NULL);
  napi_valuetype callback_type;
  struct sockaddr_storage bind_address;
  socklen_t bind_length = argc < 3 ? 0 : arg_endpoint(env, argv[0], argv[1], &bind_address);
  if (bind_length == 0 || napi_typeof(env, argv[2], &callback_type) != napi_ok || callback_type != napi_function) {
    return throw_type(env, "new UdpSocket(address, port, onMessage): an IP address, a port and a function");
  }
  int family = bind_address.ss_family == AF_INET6 ? 6 : 4;
  int fd = socket(bind_address.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket", errno);
  int on = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 || set_transparent_fd(fd, family) != 0 ||
      (family == 6 ? setsockopt(fd, SOL_IPV6, IPV6_RECVORIGDSTADDR, &on, sizeof on) : setsockopt(fd, SOL_IP, IP_RECVORIGDSTADDR, &on, sizeof on)) != 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, "setsockopt(IP_TRANSPARENT)", err);
  }
  if (family == 6) {
    // A dual-stack socket also receives IPv4 (mapped): ask for their destinations and let it
    // take them for any IPv4 address as well.
    setsockopt(fd, SOL_IP, IP_RECVORIGDSTADDR, &on, sizeof on);
    setsockopt(fd, SOL_IP, IP_TRANSPARENT, &on, sizeof on);
  }
  if (bind(fd, (struct sockaddr *)&bind_address, bind_length) != 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, "bind", err);
  }
  UdpSocket *sock = calloc(1, sizeof *sock);
  unsigned char *buffer = malloc(MAX_DATAGRAM);
  if (sock == NULL || buffer == NULL) {
    free(sock);
    free(buffer);
    close(fd);
    return throw_errno(env, "malloc", ENOMEM);
  }
  sock->env = env;
  sock->fd = fd;
  sock->family = family;
  sock->buffer = buffer;
  napi_create_reference(env, argv[2], 1, &sock->on_message);
  napi_create_reference(env, self, 1, &sock->self);
  napi_value resource_name;
  napi_create_string_utf8(env, "portcullis:UdpSocket", NAPI_AUTO_LENGTH, &resource_name);
  napi_async_init(env, self, resource_name, &sock->context);
  napi_wrap(env, self, sock, NULL, NULL, NULL);

  uv_loop_t *loop;
  napi_get_uv_event_loop(env, &loop);
  if (uv_poll_init(loop, &sock->poll, fd) != 0) {
    udp_release(sock);
    return throw_errno(env, "uv_poll_init", EINVAL);
  }
  sock->poll.data = sock;
  sock->is_polling = 1;
  uv_poll_start(&sock->poll, UV_READABLE, on_readable);
  return self;
}

// connect(address, port): only datagrams from that peer reach this socket from now on (and,
// behind TPROXY, the kernel prefers this socket for them over the listener).
static napi_value udp_connect(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  UdpSocket *sock = unwrap(env, info, &argc, argv);
  if (sock == NULL) return NULL;
  struct sockaddr_storage peer;
  socklen_t length = argc < 2 ? 0 : arg_endpoint(env, argv[0], argv[1], &peer);
  if (length == 0) return throw_type(env, "connect(address, port): an IP address and a port");
  if (connect(sock->fd, (struct sockaddr *)&peer, length) != 0) return throw_errno(env, "connect", errno);
  return NULL;
}

static napi_value udp_send(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  UdpSocket *sock = unwrap(env, info, &argc, argv);
  return sock == NULL ? NULL : send_datagram(env, sock->fd, argc, argv);
}

static napi_value udp_address(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  UdpSocket *sock = unwrap(env, info, &argc, NULL);
  return sock == NULL ? NULL : local_address(env, sock->fd);
}

static napi_value udp_close(napi_env env, napi_callback_info info) {
  napi_value self;
  void *data = NULL;
  napi_get_cb_info(env, info, NULL, NULL, &self, NULL);
  if (napi_remove_wrap(env, self, &data) == napi_ok && data != NULL) udp_release((UdpSocket *)data);
  return NULL;
}

void register_transparent(napi_env env, napi_value exports) {
  napi_property_descriptor functions[] = {
      {"originalDestination", NULL, original_destination, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setTransparent", NULL, set_transparent, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof functions / sizeof functions[0], functions);
  napi_property_descriptor methods[] = {
      {"connect", NULL, udp_connect, NULL, NULL, NULL, napi_default_method, NULL},
      {"send", NULL, udp_send, NULL, NULL, NULL, napi_default_method, NULL},
      {"address", NULL, udp_address, NULL, NULL, NULL, napi_default_method, NULL},
      {"close", NULL, udp_close, NULL, NULL, NULL, napi_default_method, NULL},
  };
  napi_value udp_class;
  napi_define_class(env, "UdpSocket", NAPI_AUTO_LENGTH, udp_new, NULL, sizeof methods / sizeof methods[0], methods, &udp_class);
  napi_set_named_property(env, exports, "UdpSocket", udp_class);
}
