{
  "targets": [
    {
      "target_name": "mqtt_session_allocator",
      "sources": [
        "native/core/allocator.cc",
        "native/core/backend.cc",
        "native/core/errors.cc",
        "native/core/session_registry.cc",
        "native/core/tags.cc",
        "native/core/thread_counters.cc",
        "native/binding/addon.cc",
        "native/binding/allocator_object.cc",
        "native/binding/buffers.cc",
        "native/binding/js_errors.cc",
        "native/binding/payload_blocks.cc",
        "native/binding/registry_functions.cc",
        "native/binding/session_queue.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "native/core"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NODE_ADDON_API_DISABLE_DEPRECATED",
        "NAPI_DISABLE_CPP_EXCEPTIONS",
        "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"
      ],
      "cflags_cc": ["-std=c++17", "-fvisibility=hidden", "-Wall", "-Wextra"],
      "cflags_cc!": ["-fno-rtti"],
      "libraries": ["-ldl", "-lpthread"],
      "ldflags": [
        "-Wl,-z,nodelete",
        "-Wl,--exclude-libs,ALL",
        "-Wl,--version-script=<(module_root_dir)/native/binding/exports.map"
      ],
      # MQSA_TCMALLOC_STATIC_LIB names a position-independent
      # libtcmalloc_minimal.a (scripts/build-tcmalloc.sh builds one) to link
      # into the addon, as the prebuilt binaries do; its headers are in
      # ../include beside it. Unset, the addon opens tcmalloc at run time.
      "variables": {
        "tcmalloc_static_lib": "<!(node -p \"process.env.MQSA_TCMALLOC_STATIC_LIB ? require('path').resolve(process.env.MQSA_TCMALLOC_STATIC_LIB) : ''\")"
      },
      "conditions": [
        ["tcmalloc_static_lib!=''", {
          "defines": ["MQSA_STATIC_TCMALLOC"],
          "include_dirs": ["<!(node -p \"require('path').resolve(process.env.MQSA_TCMALLOC_STATIC_LIB, '../../include')\")"],
          "libraries": ["<(tcmalloc_static_lib)"]
        }]
      ]
    }
  ]
}
