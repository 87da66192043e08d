"""marmot_fuzz_target: a libFuzzer target and the test that replays its committed corpus.

See TESTING.md, "Fuzzing". `name` + "_fuzzer" is libFuzzer's binary when built with
--config=fuzz (clang), and a program that runs the inputs named on its command line once each
otherwise (replay_main.cc), so a finding can be replayed in any build. `name` + "_corpus_test"
runs every file of corpus/<name>/ once, in every build.
"""

def marmot_fuzz_target(name, srcs, deps = []):
    lib = name + "_target"
    native.cc_library(
        name = lib,
        testonly = True,
        srcs = srcs,
        deps = deps + [":fuzz_target"],
        alwayslink = True,
    )
    native.cc_binary(
        name = name + "_fuzzer",
        testonly = True,
        deps = [":" + lib] + select({
            ":libfuzzer": [],
            "//conditions:default": [":replay_main"],
        }),
        linkopts = select({
            ":libfuzzer": ["-fsanitize=fuzzer"],
            "//conditions:default": [],
        }),
    )
    native.cc_test(
        name = name + "_corpus_test",
        size = "small",
        deps = [
            ":" + lib,
            ":replay_main",
        ],
        data = native.glob(["corpus/%s/*" % name]),
        args = ["tests/fuzz/corpus/" + name],
    )
