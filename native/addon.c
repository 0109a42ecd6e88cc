#include "addon.h"

static napi_value init(napi_env env, napi_value exports) {
  register_transparent(env, exports);
  register_udp_batch(env, exports);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
