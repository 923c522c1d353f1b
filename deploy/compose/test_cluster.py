"""Fault tests on the Compose cluster (deploy/compose/docker-compose.yml), run by
deploy/compose/test.sh: the official Python client produces and consumes through the cluster
while brokers and bookies are killed, cut off the network and scaled, and every check counts
acknowledged messages lost (none may be) and messages stored twice (none may be: the namespace
has producer de-duplication on, so a resend after a failover is recognised).

Usage: test_cluster.py PROJECT [SCENARIO...]   (every scenario when none is named)
The cluster must be up (test.sh starts it). Deadlines, never fixed sleeps: each wait polls a
condition and fails with what it last saw.
"""

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pulsar

COMPOSE_FILE = __file__.rsplit("/", 1)[0] + "/docker-compose.yml"
PROJECT = sys.argv[1] if len(sys.argv) > 1 else "magnetar"
NAMESPACE = "public/faults"


def log(msg):
    print(f"compose-test: {msg}", flush=True)


def sh(*args, check=True):
    r = subprocess.run(args, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout.strip()


def compose(*args):
    return sh(*COMPOSE, "-f", COMPOSE_FILE, "-p", PROJECT, *args)


def wait_for(what, cond, timeout=120):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = cond()
            if last:
                return last
        except Exception as e:  # a refused connection is a "not yet"
            last = e
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")


def containers(service):
    """Container names of a service, in replica order."""
    names = sh("docker", "ps", "-a", "--filter", f"label=com.docker.compose.project={PROJECT}",
               "--filter", f"label=com.docker.compose.service={service}",
               "--format", "{{.Names}}").split()
    return sorted(names, key=lambda n: int(n.rsplit("_", 1)[-1].rsplit("-", 1)[-1]))


def network(name):
    return f"{PROJECT}_{name}"


def ip_on(container, net):
    out = sh("docker", "inspect", "-f", "{{json .NetworkSettings.Networks}}", container)
    return json.loads(out)[network(net)]["IPAddress"]


def health(container):
    return sh("docker", "inspect", "-f", "{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}",
              container, check=False)


def wait_healthy(timeout=180):
    def all_healthy():
        names = sh("docker", "ps", "-a", "--filter", f"label=com.docker.compose.project={PROJECT}",
                   "--format", "{{.Names}}").split()
        states = {n: health(n) for n in names}
        bad = {n: s for n, s in states.items() if s != "healthy"}
        if names and not bad:
            return True
        raise AssertionError(f"not healthy: {bad or 'no containers'}")
    wait_for("every container healthy", all_healthy, timeout)


def http(url, method="GET", body=None):
    """One call; a 307 (to the owner of a topic or bundle) is followed for every method."""
    for _ in range(5):
        req = urllib.request.Request(url, method=method, data=body,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.read().decode()
        except urllib.error.HTTPError as e:
            if e.code != 307:
                raise
            url = e.headers["Location"]
    raise AssertionError(f"too many redirects for {url}")


def brokers():
    return {ip_on(c, "clients"): c for c in containers("broker") if health(c) == "healthy"}


def service_url():
    return "pulsar://" + ",".join(f"{ip}:6650" for ip in brokers())


def admin_url():
    return f"http://{next(iter(brokers()))}:8080"


def owner_of(topic):
    """The container of the broker that owns `topic` now."""
    path = topic.replace("persistent://", "persistent/")
    answer = json.loads(http(f"{admin_url()}/lookup/v2/topic/{path}"))
    ip = answer["brokerUrl"].split("//", 1)[1].rsplit(":", 1)[0]
    return brokers().get(ip) or ip


def ensure_namespace():
    base = admin_url()
    try:
        http(f"{base}/admin/v2/namespaces/{NAMESPACE}", "PUT", b"{}")
    except urllib.error.HTTPError as e:
        if e.code != 409:
            raise
    http(f"{base}/admin/v2/namespaces/{NAMESPACE}/deduplication", "POST", b"true")


class Producer:
    """Publishes `payload-<n>` at a steady rate from a thread; records which were acknowledged."""

    def __init__(self, topic, rate=200):
        keep(topic)
        self.client = pulsar.Client(service_url(), operation_timeout_seconds=60)
        # send_timeout 0: a send waits through any failover instead of failing
        self.producer = self.client.create_producer(
            topic, producer_name=f"faults-{topic.rsplit('/', 1)[-1]}", send_timeout_millis=0,
            batching_enabled=False, block_if_queue_full=True, max_pending_messages=5000)
        self.rate = rate
        self.sent = 0
        self.acked = set()
        self.failed = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        start = time.time()
        while not self.stop.is_set():
            n = self.sent
            self.producer.send_async(f"payload-{n}".encode(), self.done(n))
            self.sent += 1
            ahead = start + self.sent / self.rate - time.time()
            if ahead > 0:
                time.sleep(ahead)

    def done(self, n):
        def cb(res, _msg_id):
            with self.lock:
                if res == pulsar.Result.Ok:
                    self.acked.add(n)
                else:
                    self.failed.append((n, str(res)))
        return cb

    def acked_count(self):
        with self.lock:
            return len(self.acked)

    def finish(self, timeout=120):
        self.stop.set()
        self.thread.join()
        wait_for(f"every one of {self.sent} sends answered",
                 lambda: self.acked_count() + len(self.failed) >= self.sent, timeout)
        self.producer.close()
        self.client.close()
        return self.sent, set(self.acked), list(self.failed)


def keep(topic):
    """A durable subscription from the start, so the broker keeps every message for the check
    (with retention 0, as in Pulsar, what no subscription needs is trimmed)."""
    client = pulsar.Client(service_url())
    client.subscribe(topic, "check", initial_position=pulsar.InitialPosition.Earliest).close()
    client.close()


def check_stored(topic, acked, sent):
    """Consumes the whole topic through the subscription `keep` made: every acknowledged
    message is there, none twice."""
    client = pulsar.Client(service_url(), operation_timeout_seconds=60)
    consumer = client.subscribe(topic, "check")
    seen = []
    where = {}
    while True:
        try:
            m = consumer.receive(timeout_millis=5000)
        except pulsar.Timeout:
            break
        n = int(m.data().decode().split("-")[1])
        seen.append(n)
        where.setdefault(n, []).append(str(m.message_id()))
        consumer.acknowledge(m)
    consumer.close()
    client.close()
    stored = set(seen)
    lost = acked - stored
    twice = len(seen) - len(stored)
    log(f"{topic}: sent {sent}, acknowledged {len(acked)}, stored {len(stored)}, "
        f"acknowledged but lost {len(lost)}, stored twice {twice}")
    assert not lost, f"acknowledged messages lost: {sorted(lost)[:20]}"
    dups = {n: ids for n, ids in where.items() if len(ids) > 1}
    assert twice == 0, f"{twice} messages stored twice: {dict(list(dups.items())[:5])}"
    assert len(acked) == sent, f"{sent - len(acked)} sends were never acknowledged"


def flowing(p, what, timeout=60):
    """Waits for 200 more acknowledgements of producer `p`."""
    before = p.acked_count()
    wait_for(f"acknowledgements {what}", lambda: p.acked_count() >= before + 200, timeout)


def finish_and_check(p, topic):
    """Stops producer `p`: every send answered and none failed, then the topic's contents."""
    sent, acked, failed = p.finish()
    assert not failed, f"sends failed: {failed[:5]}"
    check_stored(topic, acked, sent)


def scale(brokers, bookies):
    compose("up", "-d", "--no-recreate", "--scale", f"broker={brokers}", "--scale", f"bookie={bookies}")


def produce_through(topic, fault, settle=None):
    """Runs a producer, applies `fault` once some messages are acknowledged, waits for
    `settle` (a condition) and for acknowledgements to flow again, then checks the topic."""
    p = Producer(topic)
    flowing(p, "before the fault")
    fault()
    if settle:
        settle()
    flowing(p, "again after the fault", 120)
    finish_and_check(p, topic)


def topic(name):
    return f"persistent://{NAMESPACE}/{name}-{int(time.time() * 1000)}"


# ---- scenarios ----------------------------------------------------------------------------

def produce_consume():
    t = topic("basic")
    client = pulsar.Client(service_url())
    consumer = client.subscribe(t, "sub", consumer_type=pulsar.ConsumerType.Shared)
    producer = client.create_producer(t)
    for i in range(1000):
        producer.send_async(f"payload-{i}".encode(), None)
    producer.flush()
    got = set()
    while len(got) < 1000:
        m = consumer.receive(timeout_millis=30000)
        got.add(m.data())
        consumer.acknowledge(m)
    client.close()
    log(f"{t}: 1000 produced and consumed through {len(brokers())} brokers")


def kill_broker():
    t = topic("kill-broker")
    victim = {}

    def fault():
        victim["c"] = owner_of(t)
        log(f"SIGKILL the owner {victim['c']}")
        sh("docker", "kill", "-s", "KILL", victim["c"])

    def settle():
        wait_for("another broker owning the topic",
                 lambda: owner_of(t) != victim["c"], 60)
    produce_through(t, fault, settle)
    sh("docker", "start", victim["c"])
    wait_healthy()


def kill_bookie():
    t = topic("kill-bookie")
    victim = containers("bookie")[0]

    def fault():
        log(f"SIGKILL the bookie {victim}")
        sh("docker", "kill", "-s", "KILL", victim)
    produce_through(t, fault)
    sh("docker", "start", victim)
    wait_healthy()


def partition(net):
    def run():
        t = topic(f"cut-{net}")
        cut = {}

        def fault():
            cut["c"] = owner_of(t)
            log(f"disconnect the owner {cut['c']} from {network(net)}")
            sh("docker", "network", "disconnect", network(net), cut["c"])

        def settle():
            others = [c for c in containers("broker") if c != cut["c"]]

            def moved():
                ip = ip_on(others[0], "clients")
                a = json.loads(http(f"http://{ip}:8080/lookup/v2/topic/{t.replace('persistent://', 'persistent/')}"))
                return ip_on(cut["c"], "clients") not in a["brokerUrl"]
            wait_for("another broker owning the topic", moved, 90)
        try:
            produce_through(t, fault, settle)
        finally:
            sh("docker", "network", "connect", network(net), cut["c"], check=False)
        wait_healthy()
    return run


def scale_brokers():
    t = topic("scale-brokers")
    p = Producer(t)
    flowing(p, "before scaling")
    log("scale brokers 2 -> 3")
    scale(3, 3)
    wait_healthy()
    assert len(containers("broker")) == 3
    # move the topic's bundle: its owner gives it up, the least-loaded broker (the new one) may take it
    path = t.replace("persistent://", "persistent/")
    http(f"{admin_url()}/admin/v2/{path}/unload", "PUT")
    flowing(p, "after the unload")
    log("scale brokers 3 -> 2 (SIGTERM: the third hands its bundles over)")
    scale(2, 3)
    flowing(p, "after scaling in", 90)
    finish_and_check(p, t)


def bookie_id(container):
    for line in sh("docker", "logs", container).splitlines():
        if "magnetar bookie ready:" in line:
            return line.rsplit("id=", 1)[1].strip()
    raise AssertionError(f"{container} printed no ready line")


def scale_bookies():
    t = topic("scale-bookies")
    p = Producer(t)
    flowing(p, "before scaling")
    log("scale bookies 3 -> 4")
    scale(2, 4)
    wait_healthy()
    fourth = containers("bookie")[-1]
    gone = bookie_id(fourth)
    broker = containers("broker")[0]
    flowing(p, "with 4 bookies")
    # New topics get new ledgers, on 2 of the 4 bookies at random: write until the new
    # bookie holds some, so that removing it has data to move.
    spread = []
    client = pulsar.Client(service_url())
    while not sh("docker", "exec", broker, "magnetar", "ledgers", "list", "--bookie", gone):
        assert len(spread) < 40, "no ledger was ever placed on the new bookie"
        extra = topic(f"spread-{len(spread)}")
        keep(extra)
        prod = client.create_producer(extra, batching_enabled=False)
        for i in range(50):
            prod.send(f"payload-{i}".encode())
        prod.close()
        spread.append(extra)
    client.close()
    held = sh("docker", "exec", broker, "magnetar", "ledgers", "list", "--bookie", gone).split()
    log(f"scale bookies 4 -> 3: stop {fourth} ({gone}, holding ledgers {held}), decommission it, remove it")
    sh("docker", "stop", fourth)
    out = sh("docker", "exec", broker, "magnetar", "ledgers", "decommission", gone, "--wait",
             "--open-ledger-grace", "5s")
    log(f"decommission: {out}")
    assert " 0 ledgers moved" not in out, out
    scale(2, 3)
    assert len(containers("bookie")) == 3
    flowing(p, "with 3 bookies again")
    finish_and_check(p, t)
    listed = sh("docker", "exec", broker, "magnetar", "ledgers", "list", "--bookie", gone)
    assert not listed.strip(), f"ledgers still on the decommissioned bookie: {listed}"
    for extra in spread:
        check_stored(extra, set(range(50)), 50)


SCENARIOS = {
    "produce_consume": produce_consume,
    "kill_broker": kill_broker,
    "kill_bookie": kill_bookie,
    "cut_broker_from_etcd": partition("brokers-meta"),
    "cut_broker_from_bookies": partition("storage"),
    "scale_brokers": scale_brokers,
    "scale_bookies": scale_bookies,
}


def main():
    wanted = sys.argv[2:] or list(SCENARIOS)
    unknown = [w for w in wanted if w not in SCENARIOS]
    if unknown:
        sys.exit(f"unknown scenarios {unknown}; known: {list(SCENARIOS)}")
    wait_healthy()
    ensure_namespace()
    failed = []
    for name in wanted:
        t0 = time.time()
        log(f"--- {name}")
        try:
            SCENARIOS[name]()
            log(f"PASS {name} ({time.time() - t0:.1f} s)")
        except Exception as e:
            log(f"FAIL {name} ({time.time() - t0:.1f} s): {e}")
            failed.append(name)
            # leave the cluster healthy for the next scenario
            scale(2, 3)
            wait_healthy()
    log(f"{len(wanted) - len(failed)} passed, {len(failed)} failed" + (f": {failed}" if failed else ""))
    sys.stdout.flush()
    # os._exit: the client library's threads can abort an orderly interpreter exit
    os._exit(1 if failed else 0)


COMPOSE = ["docker-compose"]
if __name__ == "__main__":
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        COMPOSE = ["docker", "compose"]
    main()
