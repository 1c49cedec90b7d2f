{
  # Sources come from native/sources.json, shared with CMakeLists.txt.
  # Nothing is compiled for the build machine's CPU: the AVX2 and AVX-512 kernels are separate static libraries compiled
  # with their own flags and chosen at run time by native/core/dispatch.cpp.
  "target_defaults": {
    "cflags_cc": ["-std=c++17", "-fexceptions", "-frtti", "-O3", "-fPIC"],
    "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++20"],
    "cflags": ["-fPIC"],
    "xcode_settings": {
      "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
      "GCC_ENABLE_CPP_RTTI": "YES",
      "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
      "MACOSX_DEPLOYMENT_TARGET": "10.15"
    },
    "msvs_settings": {"VCCLCompilerTool": {"ExceptionHandling": 1}},
    "include_dirs": ["native/core"]
  },
  "targets": [
    {
      "target_name": "scorefield_avx2",
      "type": "static_library",
      "sources": ["<!@(node scripts/sources.js avx2)"],
      "conditions": [
        ["target_arch=='x64'", {
          "cflags_cc": ["-mavx2", "-mfma"],
          "xcode_settings": {"OTHER_CPLUSPLUSFLAGS": ["-mavx2", "-mfma"]},
          "msvs_settings": {"VCCLCompilerTool": {"EnableEnhancedInstructionSet": "5"}}
        }]
      ]
    },
    {
      "target_name": "scorefield_avx512",
      "type": "static_library",
      "sources": ["<!@(node scripts/sources.js avx512)"],
      "conditions": [
        ["target_arch=='x64'", {
          "cflags_cc": ["-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl", "-mavx2", "-mfma"],
          "xcode_settings": {"OTHER_CPLUSPLUSFLAGS": ["-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl", "-mavx2", "-mfma"]},
          "msvs_settings": {"VCCLCompilerTool": {"AdditionalOptions": ["/arch:AVX512"]}}
        }]
      ]
    },
    {
      "target_name": "scorefield",
      "sources": ["<!@(node scripts/sources.js core)", "<!@(node scripts/sources.js binding)"],
      "dependencies": ["scorefield_avx2", "scorefield_avx512"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS", "NODE_ADDON_API_CPP_EXCEPTIONS_ALL"],
      "conditions": [
        ["OS=='linux'", {"libraries": ["-pthread", "-ldl"]}]
      ]
    }
  ]
}
