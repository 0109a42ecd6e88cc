// UdpBatchSocket: the DNS resolver's UDP socket, read and written in batches.
//
// Node's dgram makes one system call and one JavaScript callback per datagram each way, and
// at tens of thousands of queries per second on one core that overhead, not the resolver's
// own work, is what bounds it. Here a readiness event reads up to BATCH datagrams with one
// recvmmsg into fixed slots of a shared buffer and calls JavaScript once per batch; answers
// made during that call are queued and leave with one sendmmsg at its end. Answers made
// later (after an upstream round trip) go out one by one with sendto.
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "addon.h"

#define BATCH 64
// A slot holds the largest UDP payload, so every datagram reaches the resolver whole (a
// malformed 60 KB query still gets its FORMERR): 64 slots, 4 MiB a listener.
#define IN_SLOT 65536
// Queued answers up to this size are copied into the out area; larger ones are sent at once.
#define OUT_SLOT 4096
#define ADDRESS_BYTES 16

typedef struct {
  napi_env env;
  int fd;
  uv_poll_t poll;
  int is_polling;
  int is_closed;
  napi_ref on_batch;
  napi_ref self;
  napi_async_context context;
  // Shared with JavaScript (owned by the Buffers and typed arrays set on the object).
  unsigned char *in;
  int32_t *lengths;
  int32_t *ports;
  unsigned char *addresses;
  uint8_t *families;
  // Private.
  struct sockaddr_storage sources[BATCH];
  struct mmsghdr in_messages[BATCH];
  struct iovec in_vectors[BATCH];
  unsigned char out[BATCH * OUT_SLOT];
  struct mmsghdr out_messages[BATCH];
  struct iovec out_vectors[BATCH];
  int queued;
} BatchSocket;

static void poll_closed(uv_handle_t *handle) { free(handle->data); }

static void release(BatchSocket *sock) {
  if (sock->is_closed) return;
  sock->is_closed = 1;
  napi_env env = sock->env;
  if (sock->on_batch != NULL) napi_delete_reference(env, sock->on_batch);
  if (sock->self != NULL) napi_delete_reference(env, sock->self);
  if (sock->context != NULL) napi_async_destroy(env, sock->context);
  sock->on_batch = NULL;
  sock->self = NULL;
  sock->context = NULL;
  if (sock->fd >= 0) close(sock->fd);
  if (sock->is_polling) {
    uv_poll_stop(&sock->poll);
    uv_close((uv_handle_t *)&sock->poll, poll_closed);
  } else {
    free(sock);
  }
}

static void flush(BatchSocket *sock) {
  int sent = 0;
  while (sent < sock->queued) {
    int n = sendmmsg(sock->fd, sock->out_messages + sent, sock->queued - sent, MSG_DONTWAIT);
    // A full socket buffer or an error on one datagram: drop that one (UDP), go on.
    if (n <= 0) n = 1;
    sent += n;
  }
  sock->queued = 0;
}

static void on_readable(uv_poll_t *handle, int status, int events) {
  (void)events;
  BatchSocket *sock = (BatchSocket *)handle->data;
  if (sock->is_closed || status < 0) return;
  napi_env env = sock->env;
  // Several batches per wake-up when the queue is deep, then back to the event loop.
  for (int round = 0; round < 4 && !sock->is_closed; round++) {
    for (int i = 0; i < BATCH; i++) {
      sock->in_vectors[i].iov_base = sock->in + i * IN_SLOT;
      sock->in_vectors[i].iov_len = IN_SLOT;
      memset(&sock->in_messages[i].msg_hdr, 0, sizeof(struct msghdr));
      sock->in_messages[i].msg_hdr.msg_iov = &sock->in_vectors[i];
      sock->in_messages[i].msg_hdr.msg_iovlen = 1;
      sock->in_messages[i].msg_hdr.msg_name = &sock->sources[i];
      sock->in_messages[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_storage);
    }
    int count = recvmmsg(sock->fd, sock->in_messages, BATCH, MSG_DONTWAIT, NULL);
    if (count <= 0) return;
    for (int i = 0; i < count; i++) {
      struct msghdr *header = &sock->in_messages[i].msg_hdr;
      int is_truncated = (header->msg_flags & MSG_TRUNC) != 0;
      sock->lengths[i] = is_truncated ? -1 : (int32_t)sock->in_messages[i].msg_len;
      unsigned char *address = sock->addresses + i * ADDRESS_BYTES;
      memset(address, 0, ADDRESS_BYTES);
      if (sock->sources[i].ss_family == AF_INET) {
        struct sockaddr_in *v4 = (struct sockaddr_in *)&sock->sources[i];
        memcpy(address, &v4->sin_addr, 4);
        sock->ports[i] = ntohs(v4->sin_port);
        sock->families[i] = 4;
      } else if (sock->sources[i].ss_family == AF_INET6) {
        struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&sock->sources[i];
        memcpy(address, &v6->sin6_addr, 16);
        sock->ports[i] = ntohs(v6->sin6_port);
        sock->families[i] = 6;
      } else {
        sock->lengths[i] = -1;
        sock->ports[i] = 0;
        sock->families[i] = 0;
      }
    }
    napi_handle_scope scope;
    napi_open_handle_scope(env, &scope);
    napi_value callback, self, argv[1], result;
    napi_create_int32(env, count, &argv[0]);
    napi_get_reference_value(env, sock->on_batch, &callback);
    napi_get_reference_value(env, sock->self, &self);
    napi_status called = napi_make_callback(env, sock->context, self, callback, 1, argv, &result);
    if (called == napi_pending_exception) {
      napi_value exception;
      napi_get_and_clear_last_exception(env, &exception);
      napi_fatal_exception(env, exception);
    }
    napi_close_handle_scope(env, scope);
    if (!sock->is_closed) flush(sock);
    if (count < BATCH) return;
  }
}

static BatchSocket *unwrap(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
  napi_value self;
  void *data = NULL;
  napi_get_cb_info(env, info, argc, argv, &self, NULL);
  if (napi_unwrap(env, self, &data) != napi_ok || data == NULL || ((BatchSocket *)data)->is_closed) {
    napi_throw_error(env, NULL, "UdpBatchSocket is closed");
    return NULL;
  }
  return (BatchSocket *)data;
}

static napi_value shared_buffer(napi_env env, napi_value self, const char *name, size_t bytes, void **data) {
  napi_value buffer;
  napi_create_buffer(env, bytes, data, &buffer);
  memset(*data, 0, bytes);
  napi_set_named_property(env, self, name, buffer);
  return buffer;
}

static void shared_int32(napi_env env, napi_value self, const char *name, int32_t **data) {
  napi_value array_buffer, array;
  void *bytes;
  napi_create_arraybuffer(env, BATCH * sizeof(int32_t), &bytes, &array_buffer);
  memset(bytes, 0, BATCH * sizeof(int32_t));
  napi_create_typedarray(env, napi_int32_array, BATCH, array_buffer, 0, &array);
  napi_set_named_property(env, self, name, array);
  *data = (int32_t *)bytes;
}

// new UdpBatchSocket(onBatch(count)): exposes buffer (BATCH slots of IN_SLOT bytes), lengths
// (-1: drop), ports, addresses (16 bytes a slot), families (4 or 6).
static napi_value batch_new(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], self;
  napi_get_cb_info(env, info, &argc, argv, &self, NULL);
  napi_valuetype type;
  if (argc < 1 || napi_typeof(env, argv[0], &type) != napi_ok || type != napi_function) return throw_type(env, "new UdpBatchSocket(onBatch)");
  BatchSocket *sock = calloc(1, sizeof *sock);
  if (sock == NULL) return throw_errno(env, "calloc", ENOMEM);
  sock->env = env;
  sock->fd = -1;
  void *data;
  shared_buffer(env, self, "buffer", BATCH * IN_SLOT, &data);
  sock->in = data;
  shared_buffer(env, self, "addresses", BATCH * ADDRESS_BYTES, &data);
  sock->addresses = data;
  shared_buffer(env, self, "families", BATCH, &data);
  sock->families = data;
  shared_int32(env, self, "lengths", &sock->lengths);
  shared_int32(env, self, "ports", &sock->ports);
  for (int i = 0; i < BATCH; i++) {
    sock->out_vectors[i].iov_base = sock->out + i * OUT_SLOT;
    sock->out_messages[i].msg_hdr.msg_iov = &sock->out_vectors[i];
    sock->out_messages[i].msg_hdr.msg_iovlen = 1;
  }
  napi_create_reference(env, argv[0], 1, &sock->on_batch);
  napi_create_reference(env, self, 1, &sock->self);
  napi_value resource_name;
  napi_create_string_utf8(env, "portcullis:UdpBatchSocket", NAPI_AUTO_LENGTH, &resource_name);
  napi_async_init(env, self, resource_name, &sock->context);
  napi_wrap(env, self, sock, NULL, NULL, NULL);
  return self;
}

// bind(address, port, reusePort): throws with code EADDRINUSE and the like; starts reading.
// With reusePort, sockets of several threads share the port and the kernel spreads clients
// over them (SO_REUSEPORT): dns.workers.
static napi_value batch_bind(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  BatchSocket *sock = unwrap(env, info, &argc, argv);
  if (sock == NULL) return NULL;
  if (sock->fd >= 0) return throw_type(env, "bind: already bound");
  struct sockaddr_storage local;
  socklen_t length = argc < 2 ? 0 : arg_endpoint(env, argv[0], argv[1], &local);
  if (length == 0) return throw_type(env, "bind(address, port, reusePort): an IP address and a port");
  int fd = socket(local.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket", errno);
  bool reuse_port = false;
  if (argc >= 3) napi_get_value_bool(env, argv[2], &reuse_port);
  int on = 1;
  if (reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, "setsockopt(SO_REUSEPORT)", err);
  }
  if (bind(fd, (struct sockaddr *)&local, length) != 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, "bind", err);
  }
  uv_loop_t *loop;
  napi_get_uv_event_loop(env, &loop);
  if (uv_poll_init(loop, &sock->poll, fd) != 0) {
    close(fd);
    return throw_errno(env, "uv_poll_init", EINVAL);
  }
  sock->fd = fd;
  sock->poll.data = sock;
  sock->is_polling = 1;
  uv_poll_start(&sock->poll, UV_READABLE, on_readable);
  return NULL;
}

// reply(slot, data): answers the sender of `slot` in the current batch; queued, sent with the
// batch. Valid only during the onBatch call.
static napi_value batch_reply(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  BatchSocket *sock = unwrap(env, info, &argc, argv);
  if (sock == NULL) return NULL;
  int32_t slot;
  void *data;
  size_t size;
  if (argc < 2 || !arg_int(env, argv[0], &slot) || slot < 0 || slot >= BATCH || napi_get_buffer_info(env, argv[1], &data, &size) != napi_ok) return throw_type(env, "reply(slot, data)");
  socklen_t address_length = sock->sources[slot].ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
  if (size > OUT_SLOT) {
    sendto(sock->fd, data, size, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&sock->sources[slot], address_length);
    return NULL;
  }
  if (sock->queued == BATCH) flush(sock);
  int q = sock->queued++;
  memcpy(sock->out + q * OUT_SLOT, data, size);
  sock->out_vectors[q].iov_len = size;
  struct msghdr *header = &sock->out_messages[q].msg_hdr;
  header->msg_name = &sock->sources[slot];
  header->msg_namelen = address_length;
  header->msg_control = NULL;
  header->msg_controllen = 0;
  header->msg_flags = 0;
  return NULL;
}

// send(data, address, port): for answers after the batch.
static napi_value batch_send(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  BatchSocket *sock = unwrap(env, info, &argc, argv);
  return sock == NULL ? NULL : send_datagram(env, sock->fd, argc, argv);
}

static napi_value batch_address(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  BatchSocket *sock = unwrap(env, info, &argc, NULL);
  return sock == NULL ? NULL : local_address(env, sock->fd);
}

static napi_value batch_close(napi_env env, napi_callback_info info) {
  napi_value self;
  void *data = NULL;
  napi_get_cb_info(env, info, NULL, NULL, &self, NULL);
  if (napi_remove_wrap(env, self, &data) == napi_ok && data != NULL) release((BatchSocket *)data);
  return NULL;
}

void register_udp_batch(napi_env env, napi_value exports) {
  napi_property_descriptor methods[] = {
      {"bind", NULL, batch_bind, NULL, NULL, NULL, napi_default_method, NULL},
      {"reply", NULL, batch_reply, NULL, NULL, NULL, napi_default_method, NULL},
      {"send", NULL, batch_send, NULL, NULL, NULL, napi_default_method, NULL},
      {"address", NULL, batch_address, NULL, NULL, NULL, napi_default_method, NULL},
      {"close", NULL, batch_close, NULL, NULL, NULL, napi_default_method, NULL},
  };
  napi_value batch_class;
  napi_define_class(env, "UdpBatchSocket", NAPI_AUTO_LENGTH, batch_new, NULL, sizeof methods / sizeof methods[0], methods, &batch_class);
  napi_set_named_property(env, exports, "UdpBatchSocket", batch_class);
}
