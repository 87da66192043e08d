"""Test support for the Kubernetes checks: where the manifests and the image are in Bazel's
runfiles, the StatefulSet's container as data, Kubernetes' $(VAR) expansion of arguments, and a
unittest runner that writes the JUnit XML Bazel (and tools/dev's summary) reads."""

import os
import re
import sys
import unittest
import xml.etree.ElementTree as ET

import yaml

RUNFILES = os.path.join(os.environ.get("TEST_SRCDIR", "."), "marmot")
K8S = os.path.join(RUNFILES, "tools", "k8s")


def runfile(*parts):
    return os.path.join(RUNFILES, *parts)


def load_manifests():
    """Every object of the kustomization's resources, keyed by (kind, name)."""
    with open(os.path.join(K8S, "kustomization.yaml")) as f:
        kustomization = yaml.safe_load(f)
    objects = {}
    for resource in kustomization["resources"]:
        with open(os.path.join(K8S, resource)) as f:
            for doc in yaml.safe_load_all(f):
                objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return kustomization, objects


def one(objects, kind, predicate=lambda o: True):
    found = [o for (k, _), o in objects.items() if k == kind and predicate(o)]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def marmot_container(statefulset):
    containers = statefulset["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "marmot")


def flags_of(container):
    """{'-db-path': '/var/lib/marmot/marmot.db', ...} from `-flag=value` arguments."""
    flags = {}
    for arg in container["args"]:
        assert arg.startswith("-") and "=" in arg, f"argument {arg!r} is not -flag=value"
        name, value = arg.split("=", 1)
        flags[name] = value
    return flags


def port_of(address):
    return int(address.rsplit(":", 1)[1])


def expand(text, env):
    """Kubernetes' expansion of $(VAR) in command and args: defined names are replaced, $$ is a
    literal $, anything else stays as written."""

    def replace(m):
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", replace, text)


class _XmlResult(unittest.TextTestResult):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cases = []

    def _record(self, test, outcome, detail=""):
        self.cases.append((test.id(), outcome, detail))

    def addSuccess(self, test):
        super().addSuccess(test)
        self._record(test, "ok")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._record(test, "failure", self._exc_info_to_string(err, test))

    def addError(self, test, err):
        super().addError(test, err)
        self._record(test, "error", self._exc_info_to_string(err, test))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._record(test, "skipped", reason)


def main():
    runner = unittest.TextTestRunner(resultclass=_XmlResult, verbosity=2, stream=sys.stderr)
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules["__main__"])
    result = runner.run(suite)
    path = os.environ.get("XML_OUTPUT_FILE")
    if path:
        failures = sum(1 for c in result.cases if c[1] in ("failure", "error"))
        skipped = sum(1 for c in result.cases if c[1] == "skipped")
        suite_el = ET.Element("testsuite", name=os.path.basename(sys.argv[0]),
                              tests=str(len(result.cases)), failures=str(failures), errors="0",
                              skipped=str(skipped))
        for name, outcome, detail in result.cases:
            case = ET.SubElement(suite_el, "testcase", name=name)
            if outcome in ("failure", "error"):
                ET.SubElement(case, "failure", message=outcome).text = detail
            elif outcome == "skipped":
                ET.SubElement(case, "skipped", message=detail)
        root = ET.Element("testsuites")
        root.append(suite_el)
        ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    sys.exit(0 if result.wasSuccessful() else 1)
