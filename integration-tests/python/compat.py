"""Compatibility scenarios run with the official Python client (pulsar-client) against a
Magnetar broker. Usage: compat.py SERVICE_URL SCENARIO [ARGS...]. Each scenario asserts what
it checks and exits non-zero on failure; the Rust harness starts and kills the broker."""

import json
import sys
import time
import uuid

import pulsar

URL = sys.argv[1]
SCENARIO = sys.argv[2]
ARGS = sys.argv[3:]


def new_client():
    return pulsar.Client(URL, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))


def topic(name=None):
    return name or "compat-" + uuid.uuid4().hex[:8]


def drain(consumer, expected, timeout_ms=10000, ack=True):
    got = []
    while len(got) < expected:
        msg = consumer.receive(timeout_millis=timeout_ms)
        got.append(msg.data().decode())
        if ack:
            consumer.acknowledge(msg)
    return got


def produce_consume(client, n, batching, compression, use_async):
    t = topic()
    consumer = client.subscribe(t, "sub", initial_position=pulsar.InitialPosition.Earliest)
    producer = client.create_producer(
        t,
        batching_enabled=batching,
        compression_type=compression,
        block_if_queue_full=True,
        batching_max_publish_delay_ms=5,
    )
    sent = ["m-%d" % i for i in range(n)]
    if use_async:
        errors = []

        def done(res, _msg_id):
            if res != pulsar.Result.Ok:
                errors.append(res)

        for m in sent:
            producer.send_async(m.encode(), done)
        producer.flush()
        assert not errors, errors
    else:
        for m in sent:
            producer.send(m.encode())
    got = drain(consumer, n)
    assert got == sent, "order or content differs (%d received)" % len(got)
    try:
        extra = consumer.receive(timeout_millis=300)
        raise AssertionError("unexpected extra message %r" % extra.data())
    except pulsar.Timeout:
        pass
    producer.close()
    consumer.close()


def scenario_produce_consume():
    client = new_client()
    n = int(ARGS[0]) if ARGS else 10000
    produce_consume(client, n, batching=False, compression=pulsar.CompressionType.NONE, use_async=True)
    produce_consume(client, 1000, batching=False, compression=pulsar.CompressionType.NONE, use_async=False)
    produce_consume(client, n, batching=True, compression=pulsar.CompressionType.NONE, use_async=True)
    for c in (pulsar.CompressionType.LZ4, pulsar.CompressionType.ZLib, pulsar.CompressionType.ZSTD, pulsar.CompressionType.SNAPPY):
        produce_consume(client, 2000, batching=True, compression=c, use_async=True)
    client.close()


def scenario_shared():
    client = new_client()
    t = topic()
    consumers = [
        client.subscribe(t, "shared", consumer_type=pulsar.ConsumerType.Shared,
                         initial_position=pulsar.InitialPosition.Earliest, receiver_queue_size=10)
        for _ in range(3)
    ]
    producer = client.create_producer(t, batching_enabled=False, block_if_queue_full=True)
    n = 3000
    for i in range(n):
        producer.send_async(("s-%d" % i).encode(), lambda r, m: None)
    producer.flush()
    seen = {}
    idle_rounds = 0
    while len(seen) < n and idle_rounds < 20:
        progressed = False
        for idx, c in enumerate(consumers):
            try:
                m = c.receive(timeout_millis=100)
            except pulsar.Timeout:
                continue
            key = m.data().decode()
            assert key not in seen, "delivered twice: %s" % key
            seen[key] = idx
            c.acknowledge(m)
            progressed = True
        idle_rounds = 0 if progressed else idle_rounds + 1
    assert len(seen) == n, "received %d of %d" % (len(seen), n)
    per = [list(seen.values()).count(i) for i in range(3)]
    assert all(p > 0 for p in per), "a consumer got nothing: %s" % per
    # Exclusive: a second consumer is refused.
    client.subscribe(t, "excl", consumer_type=pulsar.ConsumerType.Exclusive)
    try:
        client.subscribe(t, "excl", consumer_type=pulsar.ConsumerType.Exclusive)
        raise AssertionError("second exclusive consumer accepted")
    except pulsar.ConsumerBusy:
        pass
    print(json.dumps({"per_consumer": per}))
    client.close()


def scenario_acks():
    client = new_client()
    t = topic()
    c1 = client.subscribe(t, "acks", consumer_type=pulsar.ConsumerType.Shared,
                          initial_position=pulsar.InitialPosition.Earliest)
    producer = client.create_producer(t, batching_enabled=False)
    for i in range(100):
        producer.send(("a-%d" % i).encode())
    # Cumulative ack of the first 50 on an exclusive subscription.
    ex = client.subscribe(t, "cumulative", initial_position=pulsar.InitialPosition.Earliest)
    msgs = [ex.receive(timeout_millis=5000) for _ in range(50)]
    ex.acknowledge_cumulative(msgs[-1])
    ex.close()
    ex = client.subscribe(t, "cumulative")
    first = ex.receive(timeout_millis=5000).data().decode()
    assert first == "a-50", "after a cumulative ack of a-49, got %s" % first
    ex.close()
    # A consumer that leaves with unacked messages: another consumer gets them.
    got1 = [c1.receive(timeout_millis=5000) for _ in range(30)]
    for m in got1[:10]:
        c1.acknowledge(m)
    c2 = client.subscribe(t, "acks", consumer_type=pulsar.ConsumerType.Shared)
    c1.close()
    rest = drain(c2, 90)
    assert sorted(rest, key=lambda s: int(s[2:])) == ["a-%d" % i for i in range(10, 100)], "unacked messages lost"
    client.close()


def scenario_batch_partial_ack():
    """One batch of 10 messages; a consumer with batch-index acks acknowledges the even ones
    and leaves; the next consumer gets exactly the odd ones (the broker keeps which messages
    of the batch were acknowledged and sends that with the batch)."""
    client = new_client()
    t = topic()
    consumer = client.subscribe(t, "sub", initial_position=pulsar.InitialPosition.Earliest,
                                batch_index_ack_enabled=True)
    producer = client.create_producer(t, batching_enabled=True, batching_max_messages=10,
                                      batching_max_publish_delay_ms=1000)
    for i in range(10):
        producer.send_async(("b-%d" % i).encode(), None)
    producer.flush()
    for _ in range(10):
        m = consumer.receive(timeout_millis=10000)
        if int(m.data().decode()[2:]) % 2 == 0:
            consumer.acknowledge(m)
    consumer.close()
    again = client.subscribe(t, "sub")
    got = set()
    try:
        while True:
            m = again.receive(timeout_millis=3000)
            got.add(int(m.data().decode()[2:]))
            again.acknowledge(m)
    except pulsar.Timeout:
        pass
    missing = [i for i in range(1, 10, 2) if i not in got]
    assert not missing, "unacknowledged messages of a partly acknowledged batch lost: %r" % missing
    assert got == set(range(1, 10, 2)), "acknowledged messages delivered again: %r" % sorted(got)
    client.close()


def scenario_seek():
    """SEEK: a consumer back to a message id and to a publish time, a reader to a message
    id. As with Pulsar, the broker delivers from the given entry and the client drops that
    entry itself unless start_message_id_inclusive: after seek(ids[5]) the next is s-6; a
    publish-time seek is inclusive."""
    client = new_client()
    t = topic()
    producer = client.create_producer(t, batching_enabled=False)
    ids = [producer.send(("s-%d" % i).encode()) for i in range(10)]
    time.sleep(0.05)
    middle = int(time.time() * 1000)
    time.sleep(0.05)
    ids += [producer.send(("s-%d" % i).encode()) for i in range(10, 20)]
    consumer = client.subscribe(t, "sub", initial_position=pulsar.InitialPosition.Earliest)
    assert drain(consumer, 20) == ["s-%d" % i for i in range(20)]
    consumer.seek(ids[5])
    got = drain(consumer, 14)
    assert got == ["s-%d" % i for i in range(6, 20)], got
    consumer.seek(middle)
    got = drain(consumer, 10)
    assert got == ["s-%d" % i for i in range(10, 20)], got
    reader = client.create_reader(t, pulsar.MessageId.earliest)
    assert [reader.read_next(10000).data().decode() for _ in range(20)] == ["s-%d" % i for i in range(20)]
    reader.seek(ids[15])
    got = [reader.read_next(10000).data().decode() for _ in range(4)]
    assert got == ["s-%d" % i for i in range(16, 20)], got
    inclusive = client.subscribe(t, "inclusive", initial_position=pulsar.InitialPosition.Earliest,
                                 start_message_id_inclusive=True)
    assert len(drain(inclusive, 20)) == 20
    inclusive.seek(ids[5])
    got = drain(inclusive, 15)
    assert got == ["s-%d" % i for i in range(5, 20)], got
    client.close()


def scenario_access_modes():
    """Producer access modes and names, as Pulsar enforces them."""
    from pulsar import ProducerAccessMode
    client = new_client()
    t = topic()
    p1 = client.create_producer(t, producer_name="p1", access_mode=ProducerAccessMode.Exclusive)
    for mode in (ProducerAccessMode.Exclusive, ProducerAccessMode.Shared):
        try:
            client.create_producer(t, producer_name="p2", access_mode=mode)
            raise AssertionError("a second producer beside an exclusive one (%r)" % mode)
        except (pulsar.ProducerFenced, pulsar.ProducerBusy):
            pass
    p1.send(b"from-p1")
    p3 = client.create_producer(t, producer_name="p3",
                                access_mode=ProducerAccessMode.ExclusiveWithFencing)
    try:
        p1.send(b"after-fencing")
        raise AssertionError("a fenced producer could still send")
    except (pulsar.ProducerFenced, pulsar.AlreadyClosed):
        pass
    p3.send(b"from-p3")
    p3.close()
    shared = client.create_producer(t, producer_name="same")
    try:
        client.create_producer(t, producer_name="same")
        raise AssertionError("two producers with one name")
    except pulsar.ProducerBusy:
        pass
    shared.send(b"shared")
    # WaitForExclusive: created only once the topic is free (here: when `shared` closes).
    import threading
    waited = {}

    def wait_for_exclusive():
        w = client.create_producer(t, producer_name="waiter",
                                   access_mode=ProducerAccessMode.WaitForExclusive)
        waited["at"] = time.time()
        w.send(b"from-waiter")
        w.close()

    waiter = threading.Thread(target=wait_for_exclusive)
    waiter.start()
    waiter.join(timeout=2)
    assert waiter.is_alive() and "at" not in waited, "WaitForExclusive did not wait"
    closed_at = time.time()
    shared.close()
    waiter.join(timeout=30)
    assert not waiter.is_alive() and waited["at"] >= closed_at, waited
    consumer = client.subscribe(t, "s", initial_position=pulsar.InitialPosition.Earliest)
    got = drain(consumer, 4)
    assert got == ["from-p1", "from-p3", "shared", "from-waiter"], got
    client.close()


def scenario_dedup_produce():
    """Producer named ARGS[1] on topic ARGS[0] sends ids ARGS[2]..ARGS[2]+ARGS[3] with those
    sequence ids (payload k-<id>); prints `last <id>` as the broker reported it at creation,
    then `done <last_sequence_id>`."""
    client = new_client()
    producer = client.create_producer(ARGS[0], producer_name=ARGS[1], batching_enabled=False)
    print("last %d" % producer.last_sequence_id(), flush=True)
    first, count = int(ARGS[2]), int(ARGS[3])
    for i in range(first, first + count):
        producer.send(("k-%d" % i).encode(), sequence_id=i)
    print("done %d" % producer.last_sequence_id(), flush=True)
    client.close()


def scenario_delayed():
    """Delayed delivery on a Shared subscription: a message sent with deliver_after 2 s is not
    received in the first second, then is; on an Exclusive subscription it comes at once."""
    from datetime import timedelta
    client = new_client()
    t = topic()
    shared = client.subscribe(t, "shared", consumer_type=pulsar.ConsumerType.Shared)
    exclusive = client.subscribe(t, "exclusive")
    producer = client.create_producer(t, batching_enabled=False)
    sent_at = time.time()
    producer.send(b"later", deliver_after=timedelta(milliseconds=2000))
    producer.send(b"now")
    assert exclusive.receive(5000).data() == b"later"
    first = shared.receive(5000)
    assert first.data() == b"now", first.data()
    shared.acknowledge(first)
    try:
        m = shared.receive(1000)
        raise AssertionError("delivered early: %r" % m.data())
    except pulsar.Timeout:
        pass
    m = shared.receive(10000)
    assert m.data() == b"later"
    assert time.time() - sent_at >= 2.0, "delivered after %.3f s" % (time.time() - sent_at)
    client.close()


def scenario_shared_batched():
    """Randomized (seed ARGS[0]): a Shared subscription with 1-4 consumers, receiver queues of
    1-1000, batches of 2-200 messages, some consumers slow; every message arrives (at least
    once), none is lost. Prints the parameters, so a failing seed can be replayed."""
    import random
    import threading
    rnd = random.Random(int(ARGS[0]))
    n_cons = rnd.randint(1, 4)
    queues = [rnd.choice([1, 2, 10, 100, 1000]) for _ in range(n_cons)]
    batch = rnd.choice([2, 7, 33, 100, 200])
    total = rnd.choice([500, 2000, 3000])
    slow = [rnd.random() < 0.3 for _ in range(n_cons)]
    print("consumers %d queues %r batch %d messages %d slow %r" % (n_cons, queues, batch, total, slow),
          flush=True)
    client = new_client()
    t = topic()
    consumers = [client.subscribe(t, "sub", consumer_type=pulsar.ConsumerType.Shared,
                                  receiver_queue_size=q) for q in queues]
    producer = client.create_producer(t, batching_enabled=True, batching_max_messages=batch,
                                      batching_max_publish_delay_ms=5, block_if_queue_full=True)
    for i in range(total):
        producer.send_async(("m-%d" % i).encode(), None)
    producer.flush()
    got = set()
    lock = threading.Lock()

    def run(consumer, is_slow):
        while True:
            try:
                m = consumer.receive(3000)
            except pulsar.Timeout:
                return
            if is_slow:
                time.sleep(0.001)
            with lock:
                got.add(int(m.data().decode()[2:]))
            consumer.acknowledge(m)

    threads = [threading.Thread(target=run, args=(c, s)) for c, s in zip(consumers, slow)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    missing = sorted(set(range(total)) - got)
    assert not missing, "%d messages never arrived, first %r" % (len(missing), missing[:10])
    client.close()


def scenario_produce_fixed():
    """Produce ARGS[1] messages to topic ARGS[0] (numbered from ARGS[2], default 0; send
    timeout ARGS[3] ms, default 60000); print each acknowledged id."""
    client = new_client()
    timeout = int(ARGS[3]) if len(ARGS) > 3 else 60000
    producer = client.create_producer(ARGS[0], batching_enabled=False, send_timeout_millis=timeout)
    start = int(ARGS[2]) if len(ARGS) > 2 else 0
    for i in range(start, start + int(ARGS[1])):
        producer.send(("k-%d" % i).encode())
        print("acked %d" % i, flush=True)
    client.close()


def scenario_produce_batched():
    """Produce ARGS[1] messages to topic ARGS[0] in batches of ARGS[2], each with the property
    n=<its number>; print `sent <n>` once every one is acknowledged."""
    client = new_client()
    n, size = int(ARGS[1]), int(ARGS[2])
    producer = client.create_producer(
        ARGS[0], batching_enabled=True, batching_max_messages=size,
        batching_max_publish_delay_ms=60000)
    done = []
    for i in range(n):
        producer.send_async(("b-%d" % i).encode(), lambda res, _id: done.append(res),
                            properties={"n": str(i)})
    producer.flush()
    assert len(done) == n and all(r == pulsar.Result.Ok for r in done), done
    print("sent %d" % n, flush=True)
    client.close()


def scenario_try_client():
    """Create a producer (ARGS[1] == "producer") or a Shared consumer of subscription ARGS[2]
    on topic ARGS[0]; print `created`, or `refused <error>` when the broker refuses it."""
    client = new_client()
    try:
        if ARGS[1] == "producer":
            client.create_producer(ARGS[0])
        else:
            client.subscribe(ARGS[0], ARGS[2], consumer_type=pulsar.ConsumerType.Shared)
        print("created", flush=True)
    except Exception as e:  # the client's error for the broker's refusal
        print("refused %s" % e, flush=True)
    client.close()


def scenario_produce_sized():
    """Produce ARGS[1] messages of ARGS[2] bytes (`s-<n>-` then padding) to topic ARGS[0]."""
    client = new_client()
    producer = client.create_producer(ARGS[0], batching_enabled=False)
    for i in range(int(ARGS[1])):
        head = ("s-%d-" % i).encode()
        producer.send(head + b"x" * max(0, int(ARGS[2]) - len(head)))
    print("sent %s" % ARGS[1], flush=True)
    client.close()


def scenario_produce_until_refused():
    """Send ARGS[1]-byte messages to topic ARGS[0] one at a time until a send fails (at most
    ARGS[2] seconds); print `sent <n>` and `refused <error>`."""
    client = new_client()
    producer = client.create_producer(ARGS[0], batching_enabled=False, send_timeout_millis=5000)
    payload = b"x" * int(ARGS[1])
    deadline = time.time() + int(ARGS[2])
    sent = 0
    error = "none (deadline)"
    while time.time() < deadline:
        try:
            producer.send(payload)
            sent += 1
        except Exception as e:  # the broker's refusal, as the client reports it
            error = str(e)
            break
    print("sent %d" % sent, flush=True)
    print("refused %s" % error, flush=True)
    client.close()


def scenario_schema_evolve():
    """Topic ARGS[0] (its namespace set to FORWARD): a consumer with schema V1, producers
    with V1 and V2 (a required `age`); every message decodes, with schema versions 0 and 1."""
    from pulsar.schema import AvroSchema, Integer, Record, String

    class V1(Record):
        name = String()
        age = Integer()

    class V2(Record):
        name = String()
        age = Integer(required=True)

    client = new_client()
    t = ARGS[0]
    p1 = client.create_producer(t, schema=AvroSchema(V1))
    consumer = client.subscribe(t, "s", schema=AvroSchema(V1),
                                initial_position=pulsar.InitialPosition.Earliest)
    p2 = client.create_producer(t, schema=AvroSchema(V2))
    for i in range(5):
        p1.send(V1(name="one-%d" % i, age=i))
        p2.send(V2(name="two-%d" % i, age=100 + i))
    versions = set()
    for i in range(10):
        m = consumer.receive(timeout_millis=10000)
        v = m.value()
        expected = ("one-%d" % (i // 2), i // 2) if i % 2 == 0 else ("two-%d" % (i // 2), 100 + i // 2)
        assert (v.name, v.age) == expected, (i, v.name, v.age)
        versions.add(m.schema_version().encode())
        consumer.acknowledge(m)
    assert versions == {b"\x00" * 8, b"\x00" * 7 + b"\x01"}, versions
    print("evolved", flush=True)
    client.close()


def scenario_schema_refused():
    """Topic ARGS[0] under FULL: a producer with a record whose field changes type is
    refused; JSON and STRING schemas work; print each outcome."""
    from pulsar.schema import AvroSchema, Integer, JsonSchema, Record, String, StringSchema

    class A(Record):
        id = String()

    class B(Record):
        id = Integer()

    client = new_client()
    t = ARGS[0]
    client.create_producer(t, schema=AvroSchema(A))
    try:
        client.create_producer(t, schema=AvroSchema(B))
        print("accepted", flush=True)
    except Exception as e:  # the broker's refusal, as the client reports it
        print("refused %s" % e, flush=True)
    j = client.create_producer(t + "-json", schema=JsonSchema(A))
    jc = client.subscribe(t + "-json", "s", schema=JsonSchema(A))
    j.send(A(id="x"))
    assert jc.receive(timeout_millis=10000).value().id == "x"
    s = client.create_producer(t + "-string", schema=StringSchema())
    sc = client.subscribe(t + "-string", "s", schema=StringSchema())
    s.send("hello")
    assert sc.receive(timeout_millis=10000).value() == "hello"
    print("json and string ok", flush=True)
    client.close()


def scenario_non_persistent():
    """Non-persistent topics: what is sent while a subscription has consumers arrives, what is
    sent before any subscribes is gone; regex subscriptions by mode see the right topics."""
    import re
    client = new_client()
    base = "public/default/np-%s" % uuid.uuid4().hex[:8]
    np_topic = "non-persistent://%s-a" % base
    p_topic = "persistent://%s-b" % base
    np_producer = client.create_producer(np_topic)
    for i in range(5):
        np_producer.send(b"early-%d" % i)  # no subscription yet: dropped
    shared = [client.subscribe(np_topic, "s", consumer_type=pulsar.ConsumerType.Shared) for _ in range(2)]
    p_producer = client.create_producer(p_topic)
    pattern = re.compile(base.replace("-", "\\-") + "-.*")
    modes = {
        "all": pulsar.RegexSubscriptionMode.AllTopics,
        "persistent": pulsar.RegexSubscriptionMode.PersistentOnly,
        "non": pulsar.RegexSubscriptionMode.NonPersistentOnly,
    }
    regex = {name: client.subscribe(pattern, "regex-" + name, consumer_type=pulsar.ConsumerType.Shared,
                                    regex_subscription_mode=mode)
             for name, mode in modes.items()}
    for i in range(10):
        np_producer.send(b"np-%d" % i)
        p_producer.send(b"p-%d" % i)
    got = []
    for c in shared:
        while True:
            try:
                m = c.receive(timeout_millis=1000)
            except pulsar.Timeout:
                break
            got.append(m.data().decode())
            c.acknowledge(m)
    assert sorted(got) == sorted("np-%d" % i for i in range(10)), got
    expected = {"all": {np_topic, p_topic}, "persistent": {p_topic}, "non": {np_topic}}
    for name, consumer in regex.items():
        seen = {}
        while True:
            try:
                m = consumer.receive(timeout_millis=2000)
            except pulsar.Timeout:
                break
            seen.setdefault(m.topic_name(), []).append(m.data())
            consumer.acknowledge(m)
        assert set(seen) == expected[name], (name, seen.keys())
        assert all(len(v) == 10 for v in seen.values()), (name, {k: len(v) for k, v in seen.items()})
    print("non-persistent ok", flush=True)
    client.close()


def scenario_regex_discovery():
    """A regex consumer subscribed before any matching topic exists finds a new matching
    topic and gets its messages; a topic that does not match stays out. (The C++ client
    polls GET_TOPICS_OF_NAMESPACE every `pattern_auto_discovery_period` minutes, whatever its
    documentation says: 1 is a minute.)"""
    import re
    client = new_client()
    tag = uuid.uuid4().hex[:8]
    pattern = re.compile("persistent://public/default/rx-%s-.*" % tag)
    consumer = client.subscribe(pattern, "rx", consumer_type=pulsar.ConsumerType.Shared,
                                pattern_auto_discovery_period=1,
                                initial_position=pulsar.InitialPosition.Earliest)
    other = client.create_producer("persistent://public/default/rx-%s" % tag)
    for round_ in range(1):
        t = "persistent://public/default/rx-%s-%d" % (tag, round_)
        producer = client.create_producer(t)
        other.send(b"other")
        deadline = time.time() + 150
        got = []
        while len(got) < 5 and time.time() < deadline:
            producer.send(b"m-%d" % len(got))
            try:
                m = consumer.receive(timeout_millis=1000)
            except pulsar.Timeout:
                continue
            assert m.topic_name() == t, (m.topic_name(), t)
            got.append(m.data())
            consumer.acknowledge(m)
        assert len(got) >= 5, "the consumer never found %s" % t
        # what was sent before it found the topic arrives too (Earliest), then nothing else
        while True:
            try:
                m = consumer.receive(timeout_millis=1500)
            except pulsar.Timeout:
                break
            assert m.topic_name() == t, m.topic_name()
            consumer.acknowledge(m)
    print("regex discovery ok", flush=True)
    client.close()


def scenario_compaction_produce():
    """Topic ARGS[0] (batched when ARGS[1] == "batched"): subscriptions "compacted" (read
    compacted) and "all" first, then k1=v1, k1=v2, k2=a, k3=x, k3=<tombstone>, a keyless
    "free"."""
    client = new_client()
    t = ARGS[0]
    batched = len(ARGS) > 1 and ARGS[1] == "batched"
    client.subscribe(t, "compacted", is_read_compacted=True).close()
    client.subscribe(t, "all").close()
    producer = client.create_producer(t, batching_enabled=batched, batching_max_messages=3,
                                      batching_max_publish_delay_ms=60000)
    sends = [(b"v1", "k1"), (b"v2", "k1"), (b"a", "k2"), (b"x", "k3"), (None, "k3"), (b"free", None)]
    for value, key in sends:
        if key is None:
            producer.send_async(value, None)
        else:
            producer.send_async(value, None, partition_key=key)
    producer.flush()
    print("produced", flush=True)
    client.close()


def scenario_compaction_read():
    """Topic ARGS[0]: print, as JSON, [key, value] of what the read-compacted consumer, a
    read-compacted reader and the plain subscription receive."""
    client = new_client()
    t = ARGS[0]

    def drain(receive):
        got = []
        while True:
            try:
                m = receive()
            except pulsar.Timeout:
                return got
            got.append([m.partition_key() or None, m.data().decode() if m.data() else None])

    compacted = client.subscribe(t, "compacted", is_read_compacted=True)
    plain = client.subscribe(t, "all")
    reader = client.create_reader(t, pulsar.MessageId.earliest, is_read_compacted=True)
    out = {
        "compacted": drain(lambda: compacted.receive(timeout_millis=2000)),
        "reader": drain(lambda: reader.read_next(timeout_millis=2000)),
        "all": drain(lambda: plain.receive(timeout_millis=2000)),
    }
    print(json.dumps(out), flush=True)
    client.close()


def scenario_dead_letter():
    """Negative acks and the dead-letter policy end to end: every message nacked until its
    redelivery count passes 2 lands on the DLQ topic with its properties, delivered 3 times
    first; nothing is left on the subscription."""
    client = new_client()
    t = topic()
    dlq = t + "-dlq"
    policy = pulsar.ConsumerDeadLetterPolicy(max_redeliver_count=2, dead_letter_topic=dlq,
                                             initial_subscription_name="dlq-sub")
    consumer = client.subscribe(t, "s", consumer_type=pulsar.ConsumerType.Shared,
                                negative_ack_redelivery_delay_ms=100, dead_letter_policy=policy)
    producer = client.create_producer(t, batching_enabled=False)
    n = 5
    for i in range(n):
        producer.send(b"d-%d" % i, properties={"n": str(i)})
    deliveries = {}
    while True:
        try:
            m = consumer.receive(timeout_millis=3000)
        except pulsar.Timeout:
            break
        deliveries[m.data()] = deliveries.get(m.data(), 0) + 1
        assert m.redelivery_count() == deliveries[m.data()] - 1, (m.data(), m.redelivery_count())
        consumer.negative_acknowledge(m)
    assert deliveries == {b"d-%d" % i: 3 for i in range(n)}, deliveries
    dead = client.subscribe(dlq, "dlq-sub")
    got = {}
    for _ in range(n):
        m = dead.receive(timeout_millis=10000)
        got[m.data()] = m.properties().get("n")
        dead.acknowledge(m)
    assert got == {b"d-%d" % i: str(i) for i in range(n)}, got
    print("dead letter ok", flush=True)
    client.close()


def scenario_consume_fixed():
    """Consume topic ARGS[0] with subscription ARGS[1] until idle; print what arrived."""
    client = new_client()
    consumer = client.subscribe(ARGS[0], ARGS[1], initial_position=pulsar.InitialPosition.Earliest)
    limit = int(ARGS[2]) if len(ARGS) > 2 else 1 << 30
    got = []
    while len(got) < limit:
        try:
            m = consumer.receive(timeout_millis=3000)
        except pulsar.Timeout:
            break
        got.append(int(m.data().decode()[2:]))
        consumer.acknowledge(m)
    consumer.close()
    print(json.dumps(got))
    client.close()


def scenario_failover():
    client = new_client()
    t = topic()
    c1 = client.subscribe(t, "fo", consumer_type=pulsar.ConsumerType.Failover, consumer_name="a",
                          initial_position=pulsar.InitialPosition.Earliest)
    c2 = client.subscribe(t, "fo", consumer_type=pulsar.ConsumerType.Failover, consumer_name="b")
    producer = client.create_producer(t, batching_enabled=False)
    for i in range(100):
        producer.send(("f-%d" % i).encode())
    first = drain(c1, 50)
    assert first == ["f-%d" % i for i in range(50)], first
    try:
        m = c2.receive(timeout_millis=500)
        raise AssertionError("standby consumer received %r" % m.data())
    except pulsar.Timeout:
        pass
    c1.close()
    rest = drain(c2, 50)
    assert rest == ["f-%d" % i for i in range(50, 100)], rest
    client.close()


def scenario_failover_order():
    """Failover as Pulsar picks the active consumer: on a non-partitioned topic the first to
    subscribe stays active when one with a smaller name joins; on a partitioned topic
    (ARGS[0], 4 partitions) the partitions spread over both consumers."""
    client = new_client()
    t = topic()
    z = client.subscribe(t, "fo", consumer_type=pulsar.ConsumerType.Failover, consumer_name="z",
                         initial_position=pulsar.InitialPosition.Earliest)
    a = client.subscribe(t, "fo", consumer_type=pulsar.ConsumerType.Failover, consumer_name="a")
    producer = client.create_producer(t, batching_enabled=False)
    for i in range(20):
        producer.send(b"n-%d" % i)
    assert drain(z, 20) == ["n-%d" % i for i in range(20)]
    try:
        m = a.receive(timeout_millis=500)
        raise AssertionError("the newcomer took over: %r" % m.data())
    except pulsar.Timeout:
        pass
    parts = ARGS[0]
    c1 = client.subscribe(parts, "fo", consumer_type=pulsar.ConsumerType.Failover, consumer_name="c1",
                          initial_position=pulsar.InitialPosition.Earliest)
    c2 = client.subscribe(parts, "fo", consumer_type=pulsar.ConsumerType.Failover, consumer_name="c2",
                          initial_position=pulsar.InitialPosition.Earliest)
    pp = client.create_producer(parts, batching_enabled=False,
                                message_routing_mode=pulsar.PartitionsRoutingMode.RoundRobinDistribution)
    for i in range(40):
        pp.send(b"p-%d" % i)
    got = {}
    for name, c in (("c1", c1), ("c2", c2)):
        n = 0
        while True:
            try:
                c.acknowledge(c.receive(timeout_millis=1500))
                n += 1
            except pulsar.Timeout:
                break
        got[name] = n
    assert got["c1"] > 0 and got["c2"] > 0 and got["c1"] + got["c2"] == 40, got
    print("failover order ok", flush=True)
    client.close()


def scenario_key_shared():
    client = new_client()
    t = topic()
    consumers = [
        client.subscribe(t, "ks", consumer_type=pulsar.ConsumerType.KeyShared, consumer_name="c%d" % i,
                         initial_position=pulsar.InitialPosition.Earliest, receiver_queue_size=50)
        for i in range(3)
    ]
    producer = client.create_producer(t, batching_enabled=False, block_if_queue_full=True)
    n, keys = 600, 12
    for i in range(n):
        producer.send_async(("%d" % i).encode(), lambda r, m: None, partition_key="key-%d" % (i % keys))
    producer.flush()
    owner = {}
    last = {}
    received = 0
    idle = 0
    while received < n and idle < 100:
        progressed = False
        for idx, c in enumerate(consumers):
            while True:  # drain what this consumer has
                try:
                    m = c.receive(timeout_millis=20)
                except pulsar.Timeout:
                    break
                key, seq = m.partition_key(), int(m.data().decode())
                assert owner.setdefault(key, idx) == idx, "key %s went to two consumers" % key
                assert seq > last.get(key, -1), "key %s out of order" % key
                last[key] = seq
                c.acknowledge(m)
                received += 1
                progressed = True
        idle = 0 if progressed else idle + 1
    assert received == n, "received %d of %d" % (received, n)
    assert len(set(owner.values())) > 1, "every key went to one consumer"
    client.close()


def murmur3_32(data):
    """Murmur3 x86 32-bit, seed 0 (what Pulsar hashes sticky keys with)."""
    c1, c2, h, n = 0xcc9e2d51, 0x1b873593, 0, len(data)
    rotl = lambda x, r: ((x << r) | (x >> (32 - r))) & 0xffffffff
    for i in range(0, n - n % 4, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = rotl((k * c1) & 0xffffffff, 15) * c2 & 0xffffffff
        h = (rotl(h ^ k, 13) * 5 + 0xe6546b64) & 0xffffffff
    rest = data[n - n % 4:]
    if rest:
        k = int.from_bytes(rest, "little")
        h ^= rotl((k * c1) & 0xffffffff, 15) * c2 & 0xffffffff
    h ^= n
    h ^= h >> 16
    h = (h * 0x85ebca6b) & 0xffffffff
    h ^= h >> 13
    h = (h * 0xc2b2ae35) & 0xffffffff
    return h ^ (h >> 16)


def key_hash(key):
    """A sticky key's hash in 0..65535, as the broker computes it."""
    return (murmur3_32(key.encode()) & 0x7fffffff) % 65536


def scenario_key_shared_random():
    """Randomized (seed ARGS[0]): a Key_Shared subscription (AUTO_SPLIT or STICKY ranges;
    1-3 consumers; receiver queues of 1-200; with or without key-based batching).
    1. A sleepy consumer (one that does not receive) does not stall the others: they get
       every message of the keys it does not own.
    2. A consumer joins while messages flow (STICKY: it brings the ranges nobody had, so
       those keys wait for it) and one leaves with messages unacknowledged.
    Every message arrives; per key, first deliveries come in send order (a redelivery may
    repeat an earlier one, never skip ahead). Prints the parameters for replay."""
    import random
    rnd = random.Random(int(ARGS[0]))
    sticky = rnd.random() < 0.4
    n_cons = rnd.randint(2 if sticky else 1, 3)
    queues = [rnd.choice([1, 2, 10, 50, 200]) for _ in range(n_cons + 1)]
    batch = rnd.choice([0, 0, 5, 20])
    n_keys = rnd.randint(3, 30)
    total = rnd.choice([300, 600, 1200])
    sleepy = n_cons >= 2 and rnd.random() < 0.7
    print("sticky %s consumers %d queues %r batch %d keys %d messages %d sleepy %s"
          % (sticky, n_cons, queues, batch, n_keys, total, sleepy), flush=True)
    client = new_client()
    t = topic()
    # STICKY: the first n_cons consumers split [0, 49151]; the joiner brings [49152, 65535].
    span = 49152 // n_cons
    ranges = [[(i * span, (i + 1) * span - 1 if i < n_cons - 1 else 49151)] for i in range(n_cons)]
    ranges.append([(49152, 65535)])

    def subscribe(i):
        policy = None
        if sticky:
            policy = pulsar.ConsumerKeySharedPolicy(key_shared_mode=pulsar.KeySharedMode.Sticky,
                                                    sticky_ranges=ranges[i])
        return client.subscribe(t, "ks", consumer_type=pulsar.ConsumerType.KeyShared,
                                consumer_name="c%d" % i, receiver_queue_size=queues[i],
                                initial_position=pulsar.InitialPosition.Earliest,
                                key_shared_policy=policy)

    consumers = {i: subscribe(i) for i in range(n_cons)}
    if batch:
        producer = client.create_producer(t, batching_enabled=True, batching_max_messages=batch,
                                          batching_max_publish_delay_ms=5,
                                          batching_type=pulsar.BatchingType.KeyBased,
                                          block_if_queue_full=True)
    else:
        producer = client.create_producer(t, batching_enabled=False, block_if_queue_full=True)

    def produce(lo, hi):
        for i in range(lo, hi):
            producer.send_async(("%d" % i).encode(), None, partition_key="key-%d" % (i % n_keys))
        producer.flush()

    owner = {}
    last = {}
    seen = set()

    def take(idx, m):
        key, seq = m.partition_key(), int(m.data().decode())
        if seq in seen:
            assert seq <= last.get(key, -1), "key %s: %d again after %d" % (key, seq, last.get(key))
        else:
            assert seq > last.get(key, -1), "key %s out of order: %d after %d" % (key, seq, last[key])
            last[key] = seq
            seen.add(seq)
        owner.setdefault(idx, set()).add(key)

    def drain(which, ack=True, rounds_idle=60, stop=None):
        idle = 0
        while idle < rounds_idle:
            progressed = False
            for idx in list(which):
                c = consumers.get(idx)
                if c is None:
                    continue
                while True:
                    try:
                        m = c.receive(timeout_millis=10)
                    except pulsar.Timeout:
                        break
                    take(idx, m)
                    if ack:
                        c.acknowledge(m)
                    progressed = True
                    if stop and stop():
                        return
            idle = 0 if progressed else idle + 1

    half = total // 2
    produce(0, half)
    if sleepy:
        # Phase 1: consumer 0 does not receive; the others must get every other key.
        drain([i for i in consumers if i != 0])
        by_others = len(seen)
        drain([0])
        sleepy_keys = owner.get(0, set())
        expected = sum(1 for i in range(half) if "key-%d" % (i % n_keys) not in sleepy_keys)
        if sticky:
            # keys in the joiner's range (no consumer yet) wait for it
            expected = sum(1 for i in range(half) if "key-%d" % (i % n_keys) not in sleepy_keys
                           and key_hash("key-%d" % (i % n_keys)) < 49152)
        assert by_others == expected, "others got %d of the %d messages of their keys" % (
            by_others, expected)
    # Phase 2: a consumer joins, messages flow, one consumer leaves.
    drain(list(consumers), stop=lambda: len(seen) >= half // 2)
    consumers[n_cons] = subscribe(n_cons)
    produce(half, total)
    leaver = rnd.choice(list(consumers))
    drain(list(consumers), ack=True, stop=lambda: len(seen) >= half + (total - half) // 3)
    if len(consumers) > 1:
        consumers.pop(leaver).close()
        if sticky:
            # its ranges would be nobody's: it comes back, and gets what it left unacknowledged
            consumers[leaver] = subscribe(leaver)
    drain(list(consumers))
    missing = sorted(set(range(total)) - seen)
    assert not missing, "%d messages never arrived, first %r" % (len(missing), missing[:10])
    print("key_shared_random ok", flush=True)
    client.close()


def scenario_shared_chunks():
    """Chunked messages on a Shared subscription with ARGS[0] consumers (small receiver
    queues): every chunk of a message reaches the consumer that got its first one, so each
    large message arrives whole, exactly once, beside small ones."""
    import threading
    n_cons = int(ARGS[0])
    client = new_client()
    t = topic()
    consumers = [client.subscribe(t, "chunks", consumer_type=pulsar.ConsumerType.Shared,
                                  receiver_queue_size=2, consumer_name="c%d" % i)
                 for i in range(n_cons)]
    producer = client.create_producer(t, chunking_enabled=True, batching_enabled=False,
                                      block_if_queue_full=True)
    big = 6 << 20  # over the broker's 5 MiB message limit: 2-3 chunks each
    sent = {}
    for i in range(8):
        body = (b"%02d" % i) * ((big + i * (1 << 20)) // 2) if i % 2 == 0 else b"small-%d" % i
        sent[i] = len(body)
        producer.send_async(body, None)
    producer.flush()
    got = {}
    lock = threading.Lock()

    def run(c, name):
        while True:
            try:
                m = c.receive(8000)
            except pulsar.Timeout:
                return
            data = m.data()
            i = int(data[6:].decode()) if data.startswith(b"small-") else int(data[:2].decode())
            with lock:
                got.setdefault(i, []).append((name, len(data)))
            c.acknowledge(m)

    threads = [threading.Thread(target=run, args=(c, "c%d" % k)) for k, c in enumerate(consumers)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for i, size in sent.items():
        assert i in got, "message %d (%d bytes) never arrived whole; got %r" % (
            i, size, {k: v for k, v in got.items()})
        assert [n for _, n in got[i]] == [size], "message %d: %r" % (i, got[i])
    print("shared chunks ok: %r" % {i: got[i][0][0] for i in sorted(got)}, flush=True)
    client.close()


def scenario_key_shared_phase():
    """Topic ARGS[0], Key_Shared subscription "ks" with two consumers (receiver queues of 10):
    produce ARGS[2] messages with 20 keys in turn (numbered from 0), then consume and
    acknowledge until ARGS[1] messages were processed (0: until idle); print, as JSON, the
    [key, number] pairs in the order they were processed."""
    client = new_client()
    t, limit, produce = ARGS[0], int(ARGS[1]), int(ARGS[2])
    consumers = [client.subscribe(t, "ks", consumer_type=pulsar.ConsumerType.KeyShared,
                                  consumer_name=name, receiver_queue_size=10,
                                  initial_position=pulsar.InitialPosition.Earliest)
                 for name in ("a", "b")]
    if produce:
        producer = client.create_producer(t, batching_enabled=False, block_if_queue_full=True)
        for i in range(produce):
            producer.send_async(("%d" % i).encode(), None, partition_key="key-%d" % (i % 20))
        producer.flush()
    got = []
    idle = 0
    while idle < 100 and (limit == 0 or len(got) < limit):
        progressed = False
        for c in consumers:
            try:
                m = c.receive(timeout_millis=20)
            except pulsar.Timeout:
                continue
            got.append([m.partition_key(), int(m.data().decode())])
            c.acknowledge(m)
            progressed = True
            if limit and len(got) >= limit:
                break
        idle = 0 if progressed else idle + 1
    print(json.dumps(got), flush=True)
    client.close()


def scenario_reader():
    client = new_client()
    t = topic()
    producer = client.create_producer(t, batching_enabled=False)
    ids = [producer.send(("r-%d" % i).encode()) for i in range(20)]
    reader = client.create_reader(t, pulsar.MessageId.earliest)
    got = []
    while reader.has_message_available():
        got.append(reader.read_next(timeout_millis=5000).data().decode())
    assert got == ["r-%d" % i for i in range(20)], got
    reader.close()
    reader = client.create_reader(t, ids[10], start_message_id_inclusive=True)
    first = reader.read_next(timeout_millis=5000).data().decode()
    assert first == "r-10", first
    reader.close()
    latest = client.create_reader(t, pulsar.MessageId.latest)
    assert not latest.has_message_available()
    producer.send(b"r-new")
    assert latest.read_next(timeout_millis=5000).data() == b"r-new"
    client.close()


globals()["scenario_" + SCENARIO]()
