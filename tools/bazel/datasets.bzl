"""@datasets: the team's shared datasets folder (real data for end-to-end tests).

It sits beside the repository (../shared/datasets). A clone made elsewhere (git clone . /tmp/x)
is pointed at it by MARMOT_DATASETS, which tools/dev sets from the repository it was cloned
from. The folder's files are linked into the repository and exported.
"""

def _datasets_repository_impl(ctx):
    path = ctx.os.environ.get("MARMOT_DATASETS", "")
    if not path:
        path = str(ctx.path(Label("//:WORKSPACE")).dirname) + "/../shared/datasets"
    folder = ctx.path(path)
    if not folder.exists:
        fail("the shared datasets folder %s does not exist; set MARMOT_DATASETS to it" % path)
    for f in folder.readdir():
        ctx.symlink(f, f.basename)
    ctx.file("BUILD.bazel", """package(default_visibility = ["//visibility:public"])

exports_files(glob(["*.sql", "*.md"]))
""")

datasets_repository = repository_rule(
    implementation = _datasets_repository_impl,
    environ = ["MARMOT_DATASETS"],
    local = True,
)
