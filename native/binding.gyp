{
  "targets": [
    {
      "target_name": "goodvibe_torch",
      "sources": ["src/addon.cc", "src/fused.cc", "src/cpu_cache.cc", "src/train_ops.cc", "src/grad_reduce.cc", "src/frozen_linear.cc", "src/f32_products.cc", "src/quant.cc", "src/op_profile.cc"],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<!@(node find-libtorch.mjs --include)"
      ],
      "libraries": ["<!@(node find-libtorch.mjs --libs)"],
      "defines": ["NAPI_CPP_EXCEPTIONS", "NAPI_VERSION=8"],
      "cflags!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++14", "-std=gnu++20"],
      "cflags_cc": ["<!@(node find-libtorch.mjs --cflags)", "-fexceptions", "-frtti", "-O3", "-fno-math-errno", "-fno-trapping-math", "-Wno-unused-parameter", "-Wno-deprecated-declarations"],
      "conditions": [
        ["OS=='linux' and '<!(echo $GOODVIBE_ASAN)'=='1'", {
          "cflags_cc": ["-fsanitize=address", "-fno-omit-frame-pointer", "-g"],
          "ldflags": ["-fsanitize=address"]
        }]
      ]
    }
  ]
}
