#!/usr/bin/python3
"""The Kubernetes manifests keep the invariants a marmot cluster needs, checked without a
cluster: what the StatefulSet runs matches marmot's flags, probes and services point at the
ports those flags open, the disruption budget keeps a quorum, and the image holds a runnable
marmot."""

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import k8s_testing as kt  # noqa: E402

# marmot's drain on SIGTERM: leadership hand-off is given 3 s (marmot.cc), then the pane (gRPC
# and REST) and the replicator stop. The grace period must leave room for all of it;
# statefulset_local_test measures a real drain against the manifest's grace period.
DRAIN_BOUND_SECONDS = 10


class ManifestsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.kustomization, cls.objects = kt.load_manifests()
        cls.sts = kt.one(cls.objects, "StatefulSet")
        cls.pod = cls.sts["spec"]["template"]
        cls.container = kt.marmot_container(cls.sts)
        cls.flags = kt.flags_of(cls.container)
        cls.labels = cls.pod["metadata"]["labels"]

    def selects_pods(self, selector):
        return selector and all(self.labels.get(k) == v for k, v in selector.items())

    def named_port(self, port):
        """A probe's or service's target port, resolved through the container's named ports."""
        if isinstance(port, int):
            return port
        by_name = {p["name"]: p["containerPort"] for p in self.container["ports"]}
        self.assertIn(port, by_name, f"port name {port} is not a container port")
        return by_name[port]

    def test_every_manifest_is_a_kustomization_resource(self):
        files = sorted(f for f in os.listdir(kt.K8S)
                       if f.endswith(".yaml") and f not in ("kustomization.yaml", ".yamllint.yaml"))
        self.assertEqual(sorted(self.kustomization["resources"]), files)

    def test_peer_service_is_headless_publishes_unready_pods_and_carries_the_raft_port(self):
        svc = self.objects[("Service", self.sts["spec"]["serviceName"])]
        self.assertEqual(svc["spec"]["clusterIP"], "None")
        self.assertIs(svc["spec"]["publishNotReadyAddresses"], True)
        self.assertTrue(self.selects_pods(svc["spec"]["selector"]))
        ports = [self.named_port(p["targetPort"]) for p in svc["spec"]["ports"]]
        self.assertEqual(ports, [kt.port_of(self.flags["-bind"])])

    def test_pane_service_is_cluster_ip_on_the_one_pane_port(self):
        svc = kt.one(self.objects, "Service",
                     lambda s: s["metadata"]["name"] != self.sts["spec"]["serviceName"])
        self.assertEqual(svc["spec"].get("type", "ClusterIP"), "ClusterIP")
        self.assertNotEqual(svc["spec"].get("clusterIP"), "None")
        self.assertTrue(self.selects_pods(svc["spec"]["selector"]))
        ports = [self.named_port(p["targetPort"]) for p in svc["spec"]["ports"]]
        # gRPC and REST share -bind-pane: no -bind-rest, no second port.
        self.assertEqual(ports, [kt.port_of(self.flags["-bind-pane"])])
        self.assertNotIn("-bind-rest", self.flags)

    def test_statefulset_starts_pods_in_parallel_and_selects_its_pods(self):
        self.assertEqual(self.sts["spec"]["podManagementPolicy"], "Parallel")
        self.assertTrue(self.selects_pods(self.sts["spec"]["selector"]["matchLabels"]))

    def test_node_identity_comes_from_the_pod_name_and_stable_dns_names(self):
        env = {e["name"]: e for e in self.container["env"]}
        self.assertEqual(env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name")
        self.assertEqual(env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"],
                         "metadata.namespace")
        self.assertEqual(self.flags["-hostname"], "$(POD_NAME)")
        self.assertNotIn("-node-id", self.flags)
        self.assertNotIn("-bootstrap", self.flags)
        # <pod>.<headless service>.<namespace>.svc:<raft port>, pods named <set>-<ordinal>.
        self.assertEqual(
            self.flags["-peers-template"],
            "%s-{ordinal}.%s.$(POD_NAMESPACE).svc:%d" % (
                self.sts["metadata"]["name"], self.sts["spec"]["serviceName"],
                kt.port_of(self.flags["-bind"])))
        self.assertEqual(int(self.flags["-replicas"]), self.sts["spec"]["replicas"])
        # Every $(VAR) an argument uses is defined before it, or Kubernetes leaves it verbatim.
        for arg in self.container["args"]:
            for var in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", arg):
                self.assertIn(var, env, f"{arg} uses undefined $({var})")

    def test_auth_and_cluster_keys_come_from_a_secret(self):
        env = {e["name"]: e for e in self.container["env"]}
        for name in ("AUTH_KEY", "CLUSTER_KEY"):
            ref = env[name]["valueFrom"]["secretKeyRef"]
            self.assertTrue(ref["name"] and ref["key"], name)
            self.assertNotIn("value", env[name])

    def test_database_and_raft_log_live_on_one_read_write_once_volume_per_pod(self):
        claims = {c["metadata"]["name"]: c for c in self.sts["spec"]["volumeClaimTemplates"]}
        mounts = {m["name"]: m["mountPath"] for m in self.container["volumeMounts"]}
        self.assertEqual(list(claims), ["data"])
        self.assertEqual(claims["data"]["spec"]["accessModes"], ["ReadWriteOnce"])
        root = mounts["data"].rstrip("/") + "/"
        self.assertTrue(self.flags["-db-path"].startswith(root), self.flags["-db-path"])
        self.assertTrue(self.flags["-raft-path"].startswith(root), self.flags["-raft-path"])
        # No pod-level volume shadows the claim.
        self.assertNotIn("data", [v["name"] for v in self.pod["spec"].get("volumes", [])])

    def test_probes_use_the_pane_port_readiness_means_caught_up_liveness_never_needs_quorum(self):
        pane = kt.port_of(self.flags["-bind-pane"])
        c = self.container
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            self.assertEqual(self.named_port(c[probe]["httpGet"]["port"]), pane, probe)
        self.assertEqual(c["readinessProbe"]["httpGet"]["path"], "/readyz")
        self.assertEqual(c["livenessProbe"]["httpGet"]["path"], "/healthz")
        self.assertEqual(c["startupProbe"]["httpGet"]["path"], "/healthz")
        startup = c["startupProbe"]
        window = startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3)
        self.assertGreaterEqual(window, 300, "the startup probe must allow minutes of start-up")
        # The pane listens on every interface, so the kubelet reaches it on the pod IP.
        for flag in ("-bind", "-bind-pane"):
            self.assertTrue(self.flags[flag].startswith("0.0.0.0:"), flag)

    def test_grace_period_covers_the_drain(self):
        grace = self.pod["spec"]["terminationGracePeriodSeconds"]
        self.assertGreaterEqual(grace, DRAIN_BOUND_SECONDS)

    def test_disruption_budget_keeps_a_quorum(self):
        pdb = kt.one(self.objects, "PodDisruptionBudget")
        replicas = self.sts["spec"]["replicas"]
        quorum = replicas // 2 + 1
        self.assertEqual(pdb["spec"]["maxUnavailable"], replicas - quorum)
        self.assertNotIn("minAvailable", pdb["spec"])
        self.assertTrue(self.selects_pods(pdb["spec"]["selector"]["matchLabels"]))

    def test_bazel_run_prints_every_manifest_with_the_built_image(self):
        with open(kt.runfile("tools", "k8s", "marmot-image.ref")) as f:
            ref = f.read().strip()
        self.assertRegex(ref, r"^marmot:[0-9a-f]{12}$")
        out = subprocess.run([kt.runfile("tools", "k8s", "manifests")], check=True,
                             capture_output=True, text=True).stdout
        import yaml
        docs = list(yaml.safe_load_all(out))
        self.assertEqual(sorted((d["kind"], d["metadata"]["name"]) for d in docs),
                         sorted(self.objects))
        sts = next(d for d in docs if d["kind"] == "StatefulSet")
        self.assertEqual(kt.marmot_container(sts)["image"], ref)
        out = subprocess.run([kt.runfile("tools", "k8s", "manifests"), "--image", "r.io/m:1"],
                             check=True, capture_output=True, text=True).stdout
        self.assertIn("image: r.io/m:1\n", out)


    @unittest.skipUnless(shutil.which("kubectl"), "kubectl is not installed")
    def test_kustomize_builds_the_same_objects(self):
        # Runfiles are symlinks out of the folder, which kustomize refuses: build a real copy.
        copy = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        for f in os.listdir(kt.K8S):
            if f.endswith(".yaml"):
                shutil.copyfile(os.path.join(kt.K8S, f), os.path.join(copy, f))
        run = subprocess.run(["kubectl", "kustomize", copy], capture_output=True, text=True,
                             timeout=60)
        self.assertEqual(run.returncode, 0, run.stderr)
        out = run.stdout
        import yaml
        docs = list(yaml.safe_load_all(out))
        self.assertEqual(sorted((d["kind"], d["metadata"]["name"]) for d in docs),
                         sorted(self.objects))
        sts = next(d for d in docs if d["kind"] == "StatefulSet")
        self.assertEqual(kt.marmot_container(sts)["image"], "marmot:latest")


class ImageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        with tarfile.open(kt.runfile("tools", "k8s", "marmot-layer.tar")) as tar:
            cls.members = {m.name.lstrip("./"): m for m in tar.getmembers()}
            tar.extractall(cls.root, numeric_owner=True)
        cls.marmot = os.path.join(cls.root, "usr/local/bin/marmot")
        cls.loader = os.path.join(cls.root, "lib64/ld-linux-x86-64.so.2")
        cls.library_path = ":".join(os.path.join(cls.root, d) for d in (
            "lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib", "usr/lib"))

    def test_layer_holds_marmot_owned_by_root_and_a_data_folder_for_the_pod_user(self):
        m = self.members["usr/local/bin/marmot"]
        self.assertEqual((m.uid, m.gid), (0, 0))
        self.assertTrue(m.mode & 0o111)
        data = self.members["var/lib/marmot"]
        self.assertEqual((data.uid, data.gid), (10001, 10001))
        with open(os.path.join(self.root, "etc/passwd")) as f:
            self.assertIn(":10001:10001:", f.read())

    def test_every_library_marmot_loads_resolves_inside_the_layer(self):
        listing = subprocess.run(
            [self.loader, "--inhibit-cache", "--library-path", self.library_path, "--list",
             self.marmot], check=True, capture_output=True, text=True).stdout
        resolved = re.findall(r"=> (\S+)", listing)
        self.assertGreater(len(resolved), 10, listing)
        outside = [p for p in resolved if not p.startswith(self.root + "/")]
        self.assertEqual(outside, [], listing)

    def test_marmot_from_the_layer_runs(self):
        out = subprocess.run(
            [self.loader, "--inhibit-cache", "--library-path", self.library_path, self.marmot,
             "--version"], capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("0.1.0", out.stdout + out.stderr)

    def test_a_pod_name_without_an_ordinal_stops_marmot_with_one_line_and_exit_2(self):
        _, objects = kt.load_manifests()
        container = kt.marmot_container(kt.one(objects, "StatefulSet"))
        env = {"POD_NAME": "web", "POD_NAMESPACE": "default"}
        args = [kt.expand(a, env) for a in container["args"]]
        out = subprocess.run(
            [self.loader, "--inhibit-cache", "--library-path", self.library_path, self.marmot]
            + args, capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 2, out.stderr)
        self.assertEqual(out.stderr.splitlines(), [
            "marmot: invalid flags: -hostname: 'web' is not a StatefulSet pod name "
            "<name>-<ordinal> (e.g. marmot-0)"])

    def test_docker_archive_names_the_reference_the_manifests_use(self):
        with open(kt.runfile("tools", "k8s", "marmot-image.ref")) as f:
            ref = f.read().strip()
        import json
        with tarfile.open(kt.runfile("tools", "k8s", "marmot-image.tar")) as tar:
            manifest = json.load(tar.extractfile("manifest.json"))
            config = json.load(tar.extractfile(manifest[0]["Config"]))
        self.assertEqual(manifest[0]["RepoTags"], [ref])
        self.assertEqual(config["config"]["Entrypoint"], ["/usr/local/bin/marmot"])
        self.assertEqual(config["config"]["User"], "10001:10001")


class DockerfileTest(unittest.TestCase):
    def test_dockerfile_builds_on_debian_12_and_runs_marmot_like_the_manifests(self):
        with open(kt.runfile("Dockerfile")) as f:
            text = f.read()
        _, objects = kt.load_manifests()
        sts = kt.one(objects, "StatefulSet")
        security = sts["spec"]["template"]["spec"]["securityContext"]
        self.assertRegex(text, r"(?m)^FROM debian:12(\S*)? AS build$")
        self.assertRegex(text, r"(?m)^FROM debian:12(\S*)?$")
        self.assertIn("bazel build //:marmot", text)
        self.assertIn('ENTRYPOINT ["%s"]' % kt.marmot_container(sts)["command"][0], text)
        self.assertRegex(text, r"(?m)^USER %d:%d$" % (security["runAsUser"],
                                                      security["runAsGroup"]))
        for port in ("8610", "6010"):
            self.assertRegex(text, r"(?m)^EXPOSE .*\b%s\b" % port)
        self.assertNotIn("6011", text)


class ReadmeTest(unittest.TestCase):
    """The README's "Deploy on Kubernetes" steps name what the manifests and BUILD files hold."""

    @classmethod
    def setUpClass(cls):
        with open(kt.runfile("README.md")) as f:
            text = f.read()
        start = text.index("## Deploy on Kubernetes")
        cls.section = text[start:text.index("\n## ", start + 1)]
        _, objects = kt.load_manifests()
        cls.sts = kt.one(objects, "StatefulSet")
        cls.container = kt.marmot_container(cls.sts)
        cls.flags = kt.flags_of(cls.container)

    def test_build_and_run_targets_exist(self):
        self.assertIn("bazel build //tools/k8s:image", self.section)
        self.assertIn("bazel run //tools/k8s:manifests -- --image", self.section)
        self.assertIn("bazel-bin/tools/k8s/marmot-layer.tar", self.section)
        self.assertIn("`marmot-image.tar`", self.section)
        for out in ("marmot-layer.tar", "marmot-image.tar"):
            self.assertTrue(os.path.exists(kt.runfile("tools", "k8s", out)), out)

    def test_secret_command_creates_the_secret_the_pods_read(self):
        env = {e["name"]: e for e in self.container["env"]}
        ref = env["AUTH_KEY"]["valueFrom"]["secretKeyRef"]
        self.assertIn("kubectl create secret generic %s --from-literal=%s=" % (
            ref["name"], ref["key"]), self.section)

    def test_scaling_commands_name_the_pods_dns_names_and_volumes(self):
        name = self.sts["metadata"]["name"]
        claim = self.sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
        replicas = self.sts["spec"]["replicas"]
        port = kt.port_of(self.flags["-bind"])
        added = "%s-%d.%s.<namespace>.svc:%d" % (
            name, replicas, self.sts["spec"]["serviceName"], port)
        self.assertIn('"nodeId": "%d", "address": "%s"' % (replicas + 1, added), self.section)
        self.assertIn("kubectl scale statefulset %s --replicas=%d" % (name, replicas + 1),
                      self.section)
        self.assertIn("/v1/nodes/%d" % (replicas + 1), self.section)
        self.assertIn("kubectl delete pvc %s-%s-%d" % (claim, name, replicas), self.section)
        self.assertIn("kubectl port-forward svc/marmot-pane %d:%d" % (
            (kt.port_of(self.flags["-bind-pane"]),) * 2), self.section)

    def test_application_snippet_shares_the_volume_at_the_same_path(self):
        import yaml
        snippet = self.section.split("```yaml\n", 1)[1].split("```", 1)[0]
        app = yaml.safe_load(snippet)["containers"][0]
        mounts = {m["name"]: m["mountPath"] for m in self.container["volumeMounts"]}
        self.assertEqual([(m["name"], m["mountPath"]) for m in app["volumeMounts"]],
                         [("data", mounts["data"])])
        self.assertEqual(app["env"][0]["value"], self.flags["-db-path"])
        self.assertIn(self.flags["-db-path"], self.section)


if __name__ == "__main__":
    kt.main()
