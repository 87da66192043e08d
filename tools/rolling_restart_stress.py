#!/usr/bin/python3
"""Rolling restarts of a 3-node marmot cluster under write load, checked for corruption.

Starts N marmot nodes on loopback, runs on every node a writer that keeps one connection open
(inserts, updates, deletes, 1-20 statement transactions, busy timeout), a writer that runs the
`sqlite3` shell once per transaction (connections that open and close all the time), and a reader
that runs `PRAGMA quick_check` / `PRAGMA integrity_check` and selects through the `sqlite3` shell
in a loop, as separate processes, as applications would. Meanwhile it stops one node at a time
(SIGTERM mostly, SIGKILL sometimes, sometimes again a moment after the restart while the node is
still installing shard snapshots) and starts it again.

At the end: every file passes integrity_check, every node holds the same rows, and every row a
writer committed holds its last committed value (or is absent after its last committed delete).
Anything a reader or writer saw that is not "ok" (`database disk image is malformed`, ...) is an
anomaly and fails the run. Exit code 0 only if everything holds.

  tools/rolling_restart_stress.py --marmot bazel-bin/marmot --minutes 20 --seed 1

Everything a run leaves is in --dir: node-N.run-K.log, anomalies.txt, events.txt, the databases.
"""

import argparse
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

SCHEMA = """
PRAGMA journal_mode=WAL;
CREATE TABLE IF NOT EXISTS own(k INTEGER PRIMARY KEY, node INTEGER NOT NULL, v INTEGER NOT NULL,
                               pad BLOB);
CREATE INDEX IF NOT EXISTS own_v ON own(v);
CREATE TABLE IF NOT EXISTS hot(k INTEGER PRIMARY KEY, v INTEGER, node INTEGER, pad TEXT);
CREATE TABLE IF NOT EXISTS tags(a TEXT, b INTEGER, val TEXT, PRIMARY KEY(a, b)) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS tags_val ON tags(val);
"""
HOT_KEYS = 50
BAD_WORDS = ("malformed", "corrupt", "not a database", "disk i/o", "unable to open")


def now():
    return time.strftime("%H:%M:%S") + ".%03d" % (int(time.time() * 1000) % 1000)


def is_corruption(text):
    text = text.lower()
    return any(w in text for w in BAD_WORDS)


# ---------------------------------------------------------------- writer and reader processes


class Anomalies:
    def __init__(self, path, who):
        self.path, self.who = path, who

    def add(self, what):
        with open(self.path, "a") as f:
            f.write("%s %s %s\n" % (now(), self.who, what.replace("\n", " | ")))


def record(touched, expected, uncertain, live):
    """A committed transaction left `touched` (key -> value, None for deleted)."""
    for k, v in touched.items():
        if v is not None and expected.get(k) is None:
            live.append(k)
        expected[k] = v
        uncertain.discard(k)
    if None in touched.values():
        live = [k for k in live if expected.get(k) is not None]
    return live


def forget(touched, uncertain, live):
    """A transaction of unknown outcome: its keys are not checked and not touched again."""
    uncertain.update(touched)
    live[:] = [k for k in live if k not in touched]


def conn_writer(args):
    """One connection kept open; records what each committed transaction left."""
    rng = random.Random(args.seed)
    anomalies = Anomalies(args.anomalies, "writer %s@node%d" % (args.writer, args.node))
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    db = sqlite3.connect(args.db, isolation_level=None, timeout=10)
    base = args.node * 100_000_000 + args.writer * 10_000_000
    expected, uncertain, live = {}, set(), []
    seq, commits, busy = 0, 0, 0
    while not stop:
        ops, touched = [], {}
        for _ in range(1 if rng.random() < 0.5 else rng.randint(2, 20)):
            r = rng.random()
            # A key deleted in this transaction is not touched again in it.
            candidates = [k for k in live[-200:] if touched.get(k, 0) is not None]
            if r < 0.45 or not candidates:
                k = base + seq
                seq += 1
                v = rng.randint(1, 1 << 40)
                ops.append(("INSERT INTO own(k, node, v, pad) VALUES (?, ?, ?, ?)",
                            (k, args.node, v, rng.randbytes(rng.randint(10, 300)))))
                touched[k] = v
            elif r < 0.8:
                k = rng.choice(candidates)
                v = rng.randint(1, 1 << 40)
                ops.append(("UPDATE own SET v = ?, pad = ? WHERE k = ?",
                            (v, rng.randbytes(rng.randint(10, 600)), k)))
                touched[k] = v
            elif r < 0.9:
                k = rng.choice(candidates)
                ops.append(("DELETE FROM own WHERE k = ?", (k,)))
                touched[k] = None
            elif r < 0.95:
                ops.append(("INSERT OR REPLACE INTO hot(k, v, node, pad) VALUES (?, ?, ?, ?)",
                            (rng.randrange(HOT_KEYS), rng.randint(1, 1 << 40), args.node,
                             "x" * rng.randint(0, 2000))))
            else:
                a = "n%d" % rng.randint(0, 30)
                ops.append(("INSERT OR REPLACE INTO tags(a, b, val) VALUES (?, ?, ?)",
                            (a, rng.randint(0, 20), "%d-%d-%d" % (args.node, args.writer, seq))))
                seq += 1
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            if is_corruption(str(e)):
                anomalies.add("BEGIN: %s" % e)
            busy += 1
            continue
        try:
            for sql, params in ops:
                db.execute(sql, params)
        except sqlite3.Error as e:
            if is_corruption(str(e)):
                anomalies.add("write: %s" % e)
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            continue
        try:
            db.execute("COMMIT")
        except sqlite3.Error as e:
            if is_corruption(str(e)):
                anomalies.add("COMMIT: %s" % e)
            forget(touched, uncertain, live)
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            continue
        commits += 1
        live = record(touched, expected, uncertain, live)
        time.sleep(rng.uniform(0, args.pause_ms / 1000.0))
    db.close()
    with open(args.ledger, "w") as f:
        json.dump({"expected": {str(k): v for k, v in expected.items()},
                   "uncertain": sorted(uncertain), "commits": commits, "busy": busy}, f)


def cli_writer(args):
    """The sqlite3 shell once per transaction: connections open and close all the time."""
    rng = random.Random(args.seed)
    anomalies = Anomalies(args.anomalies, "cli-writer %s@node%d" % (args.writer, args.node))
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    base = args.node * 100_000_000 + args.writer * 10_000_000
    expected, uncertain, live = {}, set(), []
    seq, commits, failed = 0, 0, 0
    while not stop:
        stmts, touched = [], {}
        for _ in range(rng.randint(1, 8)):
            candidates = [k for k in live[-200:] if touched.get(k, 0) is not None]
            if rng.random() < 0.6 or not candidates:
                k = base + seq
                seq += 1
                v = rng.randint(1, 1 << 40)
                stmts.append("INSERT INTO own(k, node, v, pad) VALUES (%d, %d, %d, randomblob(%d));"
                             % (k, args.node, v, rng.randint(10, 300)))
                touched[k] = v
            elif rng.random() < 0.8:
                k = rng.choice(candidates)
                v = rng.randint(1, 1 << 40)
                stmts.append("UPDATE own SET v = %d WHERE k = %d;" % (v, k))
                touched[k] = v
            else:
                k = rng.choice(candidates)
                stmts.append("DELETE FROM own WHERE k = %d;" % k)
                touched[k] = None
        script = ".bail on\n.timeout 10000\nBEGIN IMMEDIATE;\n%s\nCOMMIT;\n" % "\n".join(stmts)
        p = subprocess.run(["sqlite3", args.db], input=script, capture_output=True, text=True)
        out = (p.stdout + p.stderr).strip()
        if p.returncode != 0 or out:
            failed += 1
            if is_corruption(out):
                anomalies.add("sqlite3 shell: %s" % out)
            # Which statement failed is not parsed from the shell's message: unknown outcome.
            forget(touched, uncertain, live)
            continue
        commits += 1
        live = record(touched, expected, uncertain, live)
        time.sleep(rng.uniform(0, args.pause_ms / 1000.0))
    with open(args.ledger, "w") as f:
        json.dump({"expected": {str(k): v for k, v in expected.items()},
                   "uncertain": sorted(uncertain), "commits": commits, "busy": failed}, f)


READ_SQL = [
    "PRAGMA quick_check;",
    "SELECT count(*), sum(v) FROM own;",
    "SELECT count(*) FROM own INDEXED BY own_v WHERE v > 0;",
    "SELECT k, v FROM own ORDER BY k DESC LIMIT 3;",
    "SELECT count(*), max(v) FROM hot;",
    "SELECT count(*) FROM tags;",
]


def reader(args):
    """The sqlite3 shell in a loop: checks and selects, as an operator or application would."""
    anomalies = Anomalies(args.anomalies, "reader@node%d" % args.node)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    i = checks = 0
    while not stop:
        i += 1
        check = "PRAGMA integrity_check;" if i % 4 == 0 else random.choice(READ_SQL)
        p = subprocess.run(["sqlite3", args.db], input=".timeout 10000\n" + check + "\n",
                           capture_output=True, text=True)
        out = (p.stdout + p.stderr).strip()
        checks += 1
        if check.startswith("PRAGMA") and out != "ok":
            anomalies.add("%s -> %s" % (check, out[:2000]))
        elif p.returncode != 0 or p.stderr.strip():
            if is_corruption(out) or "locked" not in out:
                anomalies.add("%s -> rc %d %s" % (check, p.returncode, out[:2000]))
        time.sleep(0.05)
    with open(args.ledger, "w") as f:
        json.dump({"checks": checks}, f)


# ---------------------------------------------------------------- the cluster


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


class Node:
    def __init__(self, run, node_id):
        self.run, self.id = run, node_id
        self.proc, self.starts = None, 0
        self.db = os.path.join(run.dir, "node-%d.db" % node_id)

    def argv(self):
        r = self.run
        members = ",".join("%d@127.0.0.1:%d" % (i + 1, r.ports[i][0]) for i in range(r.nodes))
        return [r.marmot, "-node-id=%d" % self.id, "-bind=127.0.0.1:%d" % r.ports[self.id - 1][0],
                "-bind-pane=127.0.0.1:%d" % r.ports[self.id - 1][1],
                "-bind-rest=127.0.0.1:%d" % r.ports[self.id - 1][2], "-bootstrap=" + members,
                "-shards=%d" % r.args.shards, "-db-path=" + self.db,
                "-raft-path=" + os.path.join(r.dir, "raft-%d" % self.id),
                "-snapshot-entries=%d" % r.args.snapshot_entries,
                "-checkpoint-pages=%d" % r.args.checkpoint_pages]

    def start(self):
        self.starts += 1
        log = open(os.path.join(self.run.dir, "node-%d.run-%d.log" % (self.id, self.starts)), "w")
        self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=log)
        log.close()
        self.run.event("start node %d (run %d, pid %d)" % (self.id, self.starts, self.proc.pid))

    def wait_started(self):
        """Until marmot logged its first line: past blocking SIGTERM, which it then handles."""
        log = os.path.join(self.run.dir, "node-%d.run-%d.log" % (self.id, self.starts))
        deadline = time.time() + 20
        while time.time() < deadline and os.path.getsize(log) == 0 and self.running():
            time.sleep(0.02)

    def stop(self, sig, timeout=30):
        if sig == signal.SIGTERM:
            self.wait_started()
        t0 = time.time()
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.run.fail("node %d did not stop within %d s of %s; killing it (stacks in %s)"
                          % (self.id, timeout, signal.Signals(sig).name, self.dump_stacks()),
                          "slow stop")
            self.proc.kill()
            rc = self.proc.wait()
        took = time.time() - t0
        self.run.event("%s node %d: exit %d after %.2f s" % (signal.Signals(sig).name, self.id,
                                                             rc, took))
        if sig == signal.SIGTERM:
            self.run.term_seconds.append(took)
            if rc != 0 and took < timeout:
                self.run.fail("node %d exited %d after SIGTERM" % (self.id, rc), "exit code")
        self.proc = None

    def dump_stacks(self):
        """Every thread's stack of the running process (gdb), to see where a stop hangs."""
        path = os.path.join(self.run.dir, "node-%d.run-%d.stacks.txt" % (self.id, self.starts))
        if shutil.which("gdb") is None:
            return "nowhere: gdb is not installed"
        with open(path, "w") as out:
            subprocess.run(["gdb", "-p", str(self.proc.pid), "-batch", "-ex",
                            "thread apply all bt"], stdout=out, stderr=subprocess.STDOUT,
                           timeout=120)
        return path

    def running(self):
        return self.proc is not None and self.proc.poll() is None


class Run:
    def __init__(self, args):
        self.args = args
        self.dir = args.dir or tempfile.mkdtemp(prefix="marmot-rolling-")
        os.makedirs(self.dir, exist_ok=True)
        self.nodes = args.nodes
        # Copied so that a rebuild during the run cannot swap the binary.
        self.marmot = os.path.join(self.dir, "marmot")
        ports_file = os.path.join(self.dir, "ports.json")
        self.anomalies = os.path.join(self.dir, "anomalies.txt")
        if args.check_only:
            # The nodes keep their addresses: the Raft state remembers them.
            with open(ports_file) as f:
                self.ports = [tuple(p) for p in json.load(f)]
        else:
            shutil.copy2(args.marmot, self.marmot)
            p = free_ports(3 * self.nodes)
            self.ports = [(p[3 * i], p[3 * i + 1], p[3 * i + 2]) for i in range(self.nodes)]
            with open(ports_file, "w") as f:
                json.dump(self.ports, f)
            open(self.anomalies, "w").close()
        self.failures = []  # (category, what)
        self.term_seconds = []  # How long each SIGTERM took to stop a node.
        self.lock = threading.Lock()
        self.node = [Node(self, i + 1) for i in range(self.nodes)]
        self.workers = []

    def event(self, what):
        line = "%s %s" % (now(), what)
        with self.lock, open(os.path.join(self.dir, "events.txt"), "a") as f:
            f.write(line + "\n")
        if self.args.verbose:
            print(line, flush=True)

    def fail(self, what, category="other"):
        self.failures.append((category, what))
        self.event("FAIL %s: %s" % (category, what))

    def spawn(self, role, node, writer, seed):
        ledger = os.path.join(self.dir, "%s-%d-%d.json" % (role, node.id, writer))
        cmd = [sys.executable, os.path.abspath(__file__), "--role", role, "--db", node.db,
               "--node", str(node.id), "--writer", str(writer), "--seed", str(seed),
               "--ledger", ledger, "--anomalies", self.anomalies,
               "--pause-ms", str(self.args.pause_ms)]
        self.workers.append((role, node.id, writer, ledger, subprocess.Popen(cmd)))

    def main(self):
        a, rng = self.args, random.Random(self.args.seed)
        print("run folder %s, seed %d" % (self.dir, a.seed), flush=True)
        if a.check_only:
            for name in sorted(os.listdir(self.dir)):
                parts = name[:-len(".json")].split("-")
                if name.endswith(".json") and parts[0] in ("writer", "cli", "reader"):
                    role = "-".join(parts[:-2])
                    self.workers.append((role, int(parts[-2]), int(parts[-1]),
                                         os.path.join(self.dir, name), None))
            for n in self.node:
                n.starts = max([0] + [int(f.split(".run-")[1].split(".")[0])
                                      for f in os.listdir(self.dir)
                                      if f.startswith("node-%d.run-" % n.id)])
                n.start()
            return self.check()
        for n in self.node:
            subprocess.run(["sqlite3", n.db], input=SCHEMA, check=True, capture_output=True,
                           text=True)
        for n in self.node:
            n.start()
        time.sleep(3)
        for n in self.node:
            for w in range(a.writers_per_node):
                self.spawn("writer", n, w + 1, rng.randrange(1 << 30))
            self.spawn("cli-writer", n, 8, rng.randrange(1 << 30))
            self.spawn("reader", n, 0, 0)
        deadline = time.time() + a.minutes * 60
        rounds = kills = terms = quick = 0
        while time.time() < deadline and not self.failures_now():
            n = self.node[rounds % self.nodes]
            rounds += 1
            if not n.running():
                self.fail("node %d ended by itself (%s)" % (n.id, n.proc.poll()), "died")
                break
            sig = signal.SIGKILL if rng.random() < a.kill else signal.SIGTERM
            n.stop(sig)
            kills += sig == signal.SIGKILL
            terms += sig == signal.SIGTERM
            # Sometimes long enough for the others to compact their logs past this node, so that
            # it catches up from shard snapshots.
            time.sleep(rng.uniform(3, 12) if rng.random() < 0.3 else rng.uniform(0.1, 2))
            n.start()
            if rng.random() < a.quick_restart:
                # Stopped again while it catches up (installing shard snapshots, often).
                quick += 1
                n.wait_started()
                time.sleep(rng.uniform(0.2, 2.5))
                sig = signal.SIGKILL if rng.random() < a.kill else signal.SIGTERM
                n.stop(sig)
                kills += sig == signal.SIGKILL
                terms += sig == signal.SIGTERM
                time.sleep(rng.uniform(0.1, 1))
                n.start()
            time.sleep(rng.uniform(1, a.gap_s))
            for m in self.node:
                if not m.running():
                    self.fail("node %d ended by itself (%s)" % (m.id, m.proc.poll()), "died")
        self.event("restarts over: %d rounds, %d SIGTERM, %d SIGKILL, %d quick" % (
            rounds, terms, kills, quick))
        print("restarts over: %d rounds, %d SIGTERM, %d SIGKILL, %d restarted while catching up"
              % (rounds, terms, kills, quick), flush=True)
        for role, node, w, ledger, p in self.workers:
            p.send_signal(signal.SIGTERM)
        for role, node, w, ledger, p in self.workers:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                self.fail("%s %d@%d did not stop" % (role, w, node))
                p.kill()
        for m in self.node:
            if not m.running():
                m.start()
        return self.check()

    def failures_now(self):
        return self.args.stop_on_anomaly and (os.path.getsize(self.anomalies) > 0 or
                                              any(c == "corruption" for c, _ in self.failures))

    def dump(self, db):
        c = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=10)
        try:
            return {t: c.execute("SELECT * FROM %s ORDER BY 1, 2" % t).fetchall()
                    for t in ("own", "hot", "tags")}
        finally:
            c.close()

    def check(self):
        t0 = time.time()
        dumps = None
        while time.time() - t0 < self.args.settle_s:
            try:
                dumps = [self.dump(n.db) for n in self.node]
            except sqlite3.Error as e:
                self.fail("dump failed: %s" % e, "corruption")
                break
            if all(d == dumps[0] for d in dumps):
                break
            time.sleep(2)
        converged = dumps is not None and all(d == dumps[0] for d in dumps)
        print("settle: %s after %.1f s" % ("converged" if converged else "NOT converged",
                                          time.time() - t0), flush=True)
        for m in self.node:
            m.stop(signal.SIGTERM)
        for m in self.node:
            p = subprocess.run(["sqlite3", m.db, "PRAGMA integrity_check;"], capture_output=True,
                               text=True)
            out = (p.stdout + p.stderr).strip()
            print("node %d integrity_check: %s" % (m.id, out[:500]), flush=True)
            if out != "ok":
                self.fail("node %d integrity_check: %s" % (m.id, out[:2000]), "corruption")
        if not converged:
            for i, d in enumerate(dumps or []):
                for t in d:
                    if d[t] != dumps[0][t]:
                        a, b = set(d[t]), set(dumps[0][t])
                        self.fail("node %d table %s differs from node 1: %d rows only there, %d "
                                  "only on node 1" % (i + 1, t, len(a - b), len(b - a)),
                                  "convergence")
        try:
            dumps = [self.dump(n.db) for n in self.node]
        except sqlite3.Error as e:
            self.fail("dump failed: %s" % e, "corruption")
            dumps = []
        rows = [{r[0]: r for r in d["own"]} for d in dumps]
        commits = checked = lost = 0
        for role, node, w, ledger, p in self.workers:
            if role == "reader":
                if os.path.exists(ledger):
                    print("reader@node%d: %d checks" % (node, json.load(open(ledger))["checks"]))
                continue
            if not os.path.exists(ledger):
                self.fail("%s %d@node%d left no ledger" % (role, w, node))
                continue
            led = json.load(open(ledger))
            commits += led["commits"]
            uncertain = set(led["uncertain"])
            for k, v in led["expected"].items():
                k = int(k)
                if k in uncertain:
                    continue
                for i, r in enumerate(rows):
                    checked += 1
                    got = r.get(k)
                    if (v is None) != (got is None) or (got is not None and got[2] != v):
                        lost += 1
                        if lost <= 20:
                            self.fail("node %d key %d: expected %s, found %s" % (
                                i + 1, k, v, None if got is None else got[2]), "lost write")
        print("writers committed %d transactions; %d row copies checked, %d wrong" % (
            commits, checked, lost), flush=True)
        installs = 0
        for name in os.listdir(self.dir):
            if name.endswith(".log"):
                with open(os.path.join(self.dir, name), errors="replace") as f:
                    for line in f:
                        installs += "installed a snapshot" in line
                        if is_corruption(line) and "disk i/o" not in line.lower():
                            self.fail("%s: %s" % (name, line.strip()[:500]), "corruption")
        print("shard snapshots installed: %d" % installs, flush=True)
        with open(self.anomalies) as f:
            anomalies = f.read().splitlines()
        for line in anomalies[:30]:
            print("anomaly: " + line)
        if anomalies:
            self.fail("%d anomalies (anomalies.txt)" % len(anomalies), "corruption")
        t = sorted(self.term_seconds) or [0]
        print("SIGTERM stops: %d, median %.1f s, slowest %.1f s" % (
            len(self.term_seconds), t[len(t) // 2], t[-1]))
        for category in ("corruption", "lost write", "convergence", "slow stop", "exit code",
                         "died", "other"):
            found = [w for c, w in self.failures if c == category]
            print("%-12s %s%s" % (category, "FAIL" if found else "PASS",
                                  " (%d)" % len(found) if found else ""))
            for what in found[:8]:
                print("    " + what[:300])
        print("verdict: %s" % ("FAIL" if self.failures else "PASS"))
        return 1 if self.failures else 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--marmot", default="bazel-bin/marmot")
    p.add_argument("--dir", default="")
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--shards", type=int, default=16)
    p.add_argument("--snapshot-entries", type=int, default=20)
    p.add_argument("--checkpoint-pages", type=int, default=8)
    p.add_argument("--writers-per-node", type=int, default=2)
    p.add_argument("--pause-ms", type=float, default=10)
    p.add_argument("--kill", type=float, default=0.2, help="share of stops that are SIGKILL")
    p.add_argument("--quick-restart", type=float, default=0.3,
                   help="share of rounds that stop the node again while it catches up")
    p.add_argument("--gap-s", type=float, default=5, help="most seconds between rounds")
    p.add_argument("--settle-s", type=float, default=180)
    p.add_argument("--stop-on-anomaly", action="store_true",
                   help="end the restarts at the first sign of corruption")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--check-only", action="store_true",
                   help="start the nodes of the run in --dir again, let them settle, check")
    # Worker processes (started by the run itself).
    p.add_argument("--role", default="")
    p.add_argument("--db")
    p.add_argument("--node", type=int)
    p.add_argument("--writer", type=int)
    p.add_argument("--ledger")
    p.add_argument("--anomalies")
    args = p.parse_args()
    if args.role == "writer":
        return conn_writer(args)
    if args.role == "cli-writer":
        return cli_writer(args)
    if args.role == "reader":
        return reader(args)
    return Run(args).main()


if __name__ == "__main__":
    sys.exit(main())
