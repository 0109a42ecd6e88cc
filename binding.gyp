{
  "targets": [
    {
      "target_name": "portcullis_native",
      "conditions": [
        ["OS=='linux'", {
          "sources": ["native/addon.c", "native/common.c", "native/transparent.c", "native/udp-batch.c"],
          "cflags": ["-Wall", "-Wextra", "-Wno-unused-parameter", "-O2"]
        }]
      ]
    }
  ]
}
