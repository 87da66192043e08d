"""Generates C++ (and optionally gRPC) code from .proto files with Debian's protoc.

Debian's Bazel has no working proto toolchain offline, so a genrule calls /usr/bin/protoc and
/usr/bin/grpc_cpp_plugin directly. Imports resolve against the workspace root and the system
proto folders listed in _INCLUDES.
"""

_INCLUDES = [
    ".",
    "/usr/include",
    "/usr/share/grpc-proto",
    "/usr/share/gocode/src/github.com/gogo/googleapis",
]

def marmot_cc_proto(name, srcs, deps = [], grpc = False, visibility = None):
    """cc_library `name` holding the generated code of `srcs` (each `x.proto` in this package)."""
    stems = [s[:-len(".proto")] for s in srcs]
    hdrs = [s + ".pb.h" for s in stems]
    cc_srcs = [s + ".pb.cc" for s in stems]
    if grpc:
        hdrs += [s + ".grpc.pb.h" for s in stems]
        cc_srcs += [s + ".grpc.pb.cc" for s in stems]

    includes = " ".join(["-I" + i for i in _INCLUDES])
    native.genrule(
        name = name + "_gen",
        srcs = srcs + [d + "_srcs" for d in deps],
        outs = hdrs + cc_srcs,
        cmd = "/usr/bin/protoc %s --cpp_out=$(GENDIR) %s %s" % (
            includes,
            "--grpc_out=$(GENDIR) --plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin" if grpc else "",
            " ".join(["$(location %s)" % s for s in srcs]),
        ),
    )
    native.filegroup(
        name = name + "_srcs",
        srcs = srcs,
        visibility = visibility,
    )
    native.cc_library(
        name = name,
        srcs = cc_srcs,
        hdrs = hdrs,
        deps = deps + (["@system//:grpc"] if grpc else ["@system//:protobuf"]),
        visibility = visibility,
    )
