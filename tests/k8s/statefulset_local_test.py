#!/usr/bin/python3
"""The StatefulSet's container, run as Kubernetes would run it, for three pods on loopback.

Each pod runs the manifest's command line after Kubernetes' own $(VAR) expansion (POD_NAME,
POD_NAMESPACE from the downward API, AUTH_KEY from the Secret), with the marmot binary of the
image layer. What a cluster provides is emulated, nothing else is changed:
  - pod IPs: pod <ordinal> gets 127.A.<ordinal>.B (A and B random), so the wildcard binds of
    the manifest become binds to that address (the ports stay the manifest's);
  - cluster DNS: the peer template's name <pod>.<service>.<namespace>.svc is checked to be the
    pod's stable DNS name and then resolved to the pod IP by rewriting its host;
  - the volume claim: a folder per pod mounted at the manifest's mountPath, kept across restarts.
The application is this test, writing with Python's sqlite3 and a busy timeout, as the README's
sidecar section asks of applications.
"""

import ctypes
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import k8s_testing as kt  # noqa: E402

AUTH_KEY = "Basic azhzOnRlc3Q="
CLUSTER_KEY = "the pods' cluster key, from the Secret"
NAMESPACE = "default"
SCHEMA = "CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT);"


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def die_with_parent():
    """Runs in the child before exec: a crashed test must not leave its pods running."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Pod:
    """One pod of the StatefulSet: its command line, volume and process."""

    def __init__(self, cluster, ordinal):
        self.cluster = cluster
        self.ordinal = ordinal
        self.name = "%s-%d" % (cluster.sts["metadata"]["name"], ordinal)
        self.ip = "127.%d.%d.%d" % (cluster.net[0], ordinal, cluster.net[1])
        self.volume = os.path.join(cluster.dir, "data-" + self.name)
        os.makedirs(self.volume, exist_ok=True)
        self.proc = None
        self.log_path = os.path.join(cluster.dir, self.name + ".log")

    def env(self):
        return {"POD_NAME": self.name, "POD_NAMESPACE": NAMESPACE, "AUTH_KEY": AUTH_KEY,
                "CLUSTER_KEY": CLUSTER_KEY}

    def argv(self):
        c = self.cluster
        env = self.env()
        command = [kt.expand(a, env) for a in c.container["command"]]
        args = [kt.expand(a, env) for a in c.container["args"]]
        assert command == ["/usr/local/bin/marmot"], command
        out = [c.loader, "--inhibit-cache", "--library-path", c.library_path, c.marmot]
        for arg in args:
            name, value = arg.split("=", 1)
            if value.startswith(c.mount_path):
                value = self.volume + value[len(c.mount_path):]
            elif value.startswith("0.0.0.0:"):
                value = self.ip + value[len("0.0.0.0"):]
            elif name == "-peers-template":
                host, port = value.rsplit(":", 1)
                expected = "{ordinal}.%s.%s.svc" % (c.sts["spec"]["serviceName"], NAMESPACE)
                assert host == "%s-%s" % (c.sts["metadata"]["name"], expected), host
                value = "127.%d.{ordinal}.%d:%s" % (c.net[0], c.net[1], port)
            out.append("%s=%s" % (name, value))
        return out

    def db_path(self):
        return self.volume + self.cluster.flags["-db-path"][len(self.cluster.mount_path):]

    def start(self):
        assert self.proc is None
        # The application container creates its schema; marmot needs it on every node.
        self.sql(SCHEMA)
        env = dict(os.environ)
        env.update(self.env())
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv(), env=env, stdout=self.log, stderr=self.log,
                                     preexec_fn=die_with_parent)

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def terminate(self):
        """SIGTERM, as the kubelet sends; returns (exit code, seconds to exit)."""
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        grace = self.cluster.pod_spec["terminationGracePeriodSeconds"]
        try:
            code = self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            code = None
        self.proc = None
        return code, time.monotonic() - start

    def logs(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()[-4000:]

    def http(self, path, method="GET", body=None, auth=True):
        """(status, body) of a REST call to the pane's port, which the probes use."""
        port = kt.port_of(self.cluster.flags["-bind-pane"])
        req = urllib.request.Request("http://%s:%d%s" % (self.ip, port, path), method=method,
                                     data=body.encode() if body is not None else None)
        if auth:
            req.add_header("Authorization", AUTH_KEY)
        if body is not None:
            req.add_header("Content-Type", "application/json")
        try:
            # Longer than AddNode's own wait for the learner's promotion (60 s).
            with urllib.request.urlopen(req, timeout=75) as res:
                return res.status, res.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return None, ""

    def probe(self, kind):
        """The manifest's probe of that kind, passing or not."""
        get = self.cluster.container[kind]["httpGet"]
        return self.http(get["path"], auth=False)[0] == 200

    def sql(self, statement):
        # An application's connection: same file, a busy timeout, WAL left as marmot set it.
        con = sqlite3.connect(self.db_path(), timeout=10)
        try:
            rows = con.execute(statement).fetchall()
            con.commit()
            return rows
        finally:
            con.close()


class StatefulSetLocalTest(unittest.TestCase):
    def setUp(self):
        _, objects = kt.load_manifests()
        self.sts = kt.one(objects, "StatefulSet")
        self.pod_spec = self.sts["spec"]["template"]["spec"]
        self.container = kt.marmot_container(self.sts)
        self.flags = kt.flags_of(self.container)
        self.mount_path = next(m["mountPath"] for m in self.container["volumeMounts"]
                               if m["name"] == "data").rstrip("/")
        self.dir = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        self.net = self.free_loopback_net()
        image = os.path.join(self.dir, "image")
        with tarfile.open(kt.runfile("tools", "k8s", "marmot-layer.tar")) as tar:
            tar.extractall(image, numeric_owner=True)
        self.marmot = os.path.join(image, "usr/local/bin/marmot")
        self.loader = os.path.join(image, "lib64/ld-linux-x86-64.so.2")
        self.library_path = ":".join(os.path.join(image, d) for d in (
            "lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib", "usr/lib"))
        self.pods = []

    def free_loopback_net(self):
        """(A, B) such that the pod IPs 127.A.<ordinal>.B have the manifest's ports free for four
        pods: a loopback network of its own, away from 127.0.0.1 where other tests listen, and
        picked at random (test sandboxes share process ids, so runs side by side differ only by
        chance, one in 37,000)."""
        ports = [kt.port_of(self.flags[f]) for f in ("-bind", "-bind-pane")]
        rng = random.SystemRandom()
        for _ in range(100):
            net = (rng.randrange(100, 250), rng.randrange(1, 255))
            try:
                for ordinal in range(4):
                    for port in ports:
                        with socket.socket() as s:
                            s.bind(("127.%d.%d.%d" % (net[0], ordinal, net[1]), port))
                return net
            except OSError:
                continue
        raise AssertionError("no free 127.A.x.B network for the pods")

    def tearDown(self):
        for pod in self.pods:
            if pod.proc is not None:
                pod.proc.kill()
                pod.proc.wait(10)

    def same_everywhere(self, query, pods):
        results = []
        for pod in pods:
            try:
                results.append(pod.sql(query))
            except sqlite3.Error:
                return False
        return all(r == results[0] for r in results)

    def wait_ready(self, pods, timeout=120):
        for pod in pods:
            wait_for(lambda: pod.proc.poll() is None and pod.probe("readinessProbe"), timeout,
                     "%s to pass its readiness probe; log:\n%s" % (pod.name, pod.logs()))

    def test_three_pods_form_a_cluster_replicate_restart_scale_and_drain(self):
        replicas = self.sts["spec"]["replicas"]
        self.assertEqual(replicas, 3)
        self.pods = [Pod(self, i) for i in range(replicas)]
        # podManagementPolicy: Parallel, every pod starts at once.
        for pod in self.pods:
            pod.start()
        for pod in self.pods:
            wait_for(lambda: pod.probe("startupProbe"), 60,
                     "%s to pass its startup probe; log:\n%s" % (pod.name, pod.logs()))
        self.wait_ready(self.pods)
        for pod in self.pods:
            self.assertTrue(pod.probe("livenessProbe"))

        # Node ids are ordinal + 1, the members are the founding pods at their DNS names.
        status, body = self.pods[0].http("/v1/nodes")
        self.assertEqual(status, 200, body)
        ids = sorted(int(n["nodeId"]) for n in json.loads(body)["nodes"])
        self.assertEqual(ids, [1, 2, 3])
        # The pane takes the AUTH_KEY of the Secret and nothing else.
        self.assertEqual(self.pods[0].http("/v1/status", auth=False)[0], 401)

        # A row written by the application on pod 0 reaches every pod.
        self.pods[0].sql("INSERT INTO kv VALUES ('a', 'from marmot-0')")
        wait_for(lambda: self.same_everywhere("SELECT * FROM kv ORDER BY k", self.pods), 60,
                 "the row of marmot-0 on every pod")
        self.assertEqual(self.pods[2].sql("SELECT v FROM kv WHERE k = 'a'"), [("from marmot-0",)])

        # marmot-1 crashes; the others keep writing; it comes back on the same volume, catches up,
        # and its own writes replicate again.
        self.pods[1].kill()
        self.pods[2].sql("INSERT INTO kv VALUES ('b', 'while marmot-1 was down')")
        self.pods[1].start()
        self.wait_ready([self.pods[1]])
        wait_for(lambda: self.same_everywhere("SELECT * FROM kv ORDER BY k", self.pods), 60,
                 "marmot-1 to catch up after its restart")
        self.pods[1].sql("INSERT INTO kv VALUES ('c', 'from marmot-1 after restart')")
        wait_for(lambda: self.same_everywhere("SELECT * FROM kv ORDER BY k", self.pods), 60,
                 "the write of the restarted marmot-1 on every pod")

        # Scale up (README): marmot-3 starts with the same command line, joins and is not ready
        # until an operator adds it at its stable DNS name.
        four = Pod(self, replicas)
        self.pods.append(four)
        four.start()
        wait_for(lambda: four.probe("startupProbe"), 60, "marmot-3's startup probe")
        time.sleep(1)
        self.assertFalse(four.probe("readinessProbe"), "a pod that was not added cannot be ready")
        address = "%s:%d" % (four.ip, kt.port_of(self.flags["-bind"]))
        status, body = self.pods[0].http(
            "/v1/nodes", "POST", json.dumps({"nodeId": str(four.ordinal + 1), "address": address}))
        self.assertEqual(status, 200, body)
        self.wait_ready([four])
        wait_for(lambda: self.same_everywhere("SELECT * FROM kv ORDER BY k", self.pods), 60,
                 "the rows on the added marmot-3")

        # Scale down (README): RemoveNode first, then the pod goes.
        status, body = self.pods[1].http("/v1/nodes/%d" % (four.ordinal + 1), "DELETE")
        self.assertEqual(status, 200, body)
        code, _ = four.terminate()
        self.assertEqual(code, 0, four.logs())
        self.pods.remove(four)
        self.pods[0].sql("INSERT INTO kv VALUES ('d', 'after scaling down')")
        wait_for(lambda: self.same_everywhere("SELECT count(*) FROM kv", self.pods), 60,
                 "a write after scaling down")
        self.assertEqual(self.pods[2].sql("SELECT count(*) FROM kv"), [(4,)])

        # A rolling update (kubectl rollout restart): highest ordinal first, one pod at a time,
        # each drained by SIGTERM, started again on its volume, and ready before the next.
        for pod in reversed(self.pods):
            code, _ = pod.terminate()
            self.assertEqual(code, 0, pod.logs())
            pod.start()
            self.wait_ready([pod])
        self.pods[2].sql("INSERT INTO kv VALUES ('e', 'after the rolling update')")
        wait_for(lambda: self.same_everywhere("SELECT * FROM kv ORDER BY k", self.pods), 60,
                 "a write after the rolling update")

        # Every pod lost at once (a zone outage): they come back in parallel on their volumes,
        # keep their membership (-bootstrap is ignored once Raft state exists) and every row.
        for pod in self.pods:
            pod.kill()
        for pod in self.pods:
            pod.start()
        self.wait_ready(self.pods)
        self.assertEqual(self.pods[1].sql("SELECT count(*) FROM kv"), [(5,)])
        self.pods[1].sql("INSERT INTO kv VALUES ('f', 'after the outage')")
        wait_for(lambda: self.same_everywhere("SELECT * FROM kv ORDER BY k", self.pods), 60,
                 "a write after every pod restarted")

        # The kubelet's SIGTERM: each pod drains and exits 0 within the grace period.
        grace = self.pod_spec["terminationGracePeriodSeconds"]
        for pod in self.pods:
            code, seconds = pod.terminate()
            self.assertEqual(code, 0, "%s did not exit 0 within %d s:\n%s" % (
                pod.name, grace, pod.logs()))
            self.assertLess(seconds, grace)
            print("%s drained in %.1f s (grace period %d s)" % (pod.name, seconds, grace),
                  file=sys.stderr)


if __name__ == "__main__":
    kt.main()
