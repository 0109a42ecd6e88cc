{
  "targets": [
    {
      "target_name": "portcullis_transparent",
      "conditions": [
        ["OS=='linux'", {
          "sources": ["native/transparent.c"],
          "cflags": ["-Wall", "-Wextra", "-Wno-unused-parameter", "-O2"]
        }]
      ]
    }
  ]
}
