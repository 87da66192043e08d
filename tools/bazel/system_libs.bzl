"""Brings Debian's system libraries into the build as @system//:<name> cc_library targets.

Link flags come from pkg-config wherever the package ships a .pc file, so the build follows the
installed versions (gRPC, for one, lists the exact abseil libraries it needs). Headers live in
/usr/include and need no declaration. A missing package fails the fetch with the command that
installs it.
"""

# target name -> (pkg-config modules, extra link flags for libraries without a .pc file)
_LIBS = {
    "absl": ([
        "absl_status",
        "absl_statusor",
        "absl_strings",
        "absl_str_format",
        "absl_synchronization",
        "absl_time",
        "absl_hash",
        "absl_raw_hash_set",
        "absl_random_random",
    ], []),
    "benchmark": (["benchmark"], []),
    # OpenSSL's libcrypto (HMAC-SHA256, random nonces; raft/host/peer_auth.h). gRPC links it too.
    "crypto": (["libcrypto"], []),
    "benchmark_main": (["benchmark"], ["-lbenchmark_main"]),
    "gflags": (["gflags"], []),
    "glog": (["libglog"], []),
    "grpc": (["grpc++", "protobuf"], ["-lgrpc++_reflection"]),
    "gtest": (["gtest", "gmock"], []),
    "gtest_main": (["gtest_main", "gmock"], []),
    "httplib": (["cpp-httplib"], []),
    "prometheus": (["prometheus-cpp-core"], []),
    "protobuf": (["protobuf"], []),
    "rocksdb": (["rocksdb"], []),
    # OpenSSL's libssl: TLS on the control pane's port (pane/pane_tls.h).
    "ssl": (["libssl"], []),
    "sqlite3": (["sqlite3"], []),
    "xxhash": (["libxxhash"], []),
}

# Libraries whose compile flags change their classes' layout: their headers must be read with the
# -D flags the library itself was built with (pkg-config --cflags). Debian builds cpp-httplib
# with OpenSSL, zlib and Brotli support, which adds members to httplib::Client and Request;
# without the same defines, code built here and the library disagree on those objects' size.
_WITH_DEFINES = ["httplib"]

def _pkg_config_defines(ctx, modules):
    result = ctx.execute(["pkg-config", "--cflags-only-other"] + modules)
    if result.return_code != 0:
        fail("pkg-config cannot find %s: %s" % (" ".join(modules), result.stderr))
    return [f[2:] for f in result.stdout.strip().split(" ") if f.startswith("-D")]

def _pkg_config_libs(ctx, modules):
    result = ctx.execute(["pkg-config", "--libs"] + modules)
    if result.return_code != 0:
        fail("pkg-config cannot find %s: %s\nRun tools/dev setup to install the build's Debian packages." %
             (" ".join(modules), result.stderr))
    return [f for f in result.stdout.strip().replace("\n", " ").split(" ") if f]

def _system_libs_impl(ctx):
    lines = ['package(default_visibility = ["//visibility:public"])', ""]
    for name, (modules, extra) in sorted(_LIBS.items()):
        flags = _pkg_config_libs(ctx, modules) + extra
        lines.append("cc_library(")
        lines.append("    name = %r," % name)
        lines.append("    linkopts = %r," % (flags + ["-lpthread"]))
        if name in _WITH_DEFINES:
            lines.append("    defines = %r," % _pkg_config_defines(ctx, modules))
        lines.append(")")
        lines.append("")
    ctx.file("WORKSPACE", 'workspace(name = "%s")\n' % ctx.name)
    ctx.file("BUILD.bazel", "\n".join(lines))

system_libs = repository_rule(
    implementation = _system_libs_impl,
    local = True,
    environ = ["PKG_CONFIG_PATH"],
)
