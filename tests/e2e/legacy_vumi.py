"""A Vumi 0.6 worker on the same broker, written against plain AMQP (pika), as the legacy-interop
tests need it. It declares exactly what Vumi declared (exchange `vumi`, direct, durable; queues
durable, not exclusive, not auto-delete, no arguments), publishes hand-written Vumi JSON as Vumi
wrote it (ASCII, `", "` separators, delivery mode 2 and no other property, no confirms), and reads
our messages back.

    legacy_vumi.py transport CONNECTOR N     # a transport: N inbound messages (and one bad body),
                                             # then print the N replies from CONNECTOR.outbound
    legacy_vumi.py app CONNECTOR N           # an application: answer N inbound messages
                                             # with "legacy: <content>", printing each

Each printed line is one JSON object; `ready` is printed once the queues are declared.
"""

import datetime
import json
import sys
import uuid

import pika

EXCHANGE = "vumi"


def now():
    return datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M:%S.%f")


def connect():
    params = pika.ConnectionParameters(host="127.0.0.1", port=5672, virtual_host="/",
                                       credentials=pika.PlainCredentials("guest", "guest"),
                                       heartbeat=0)
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    # Exactly Vumi's declarations (vumi/service.py: exchange_declare, queue_declare, queue_bind).
    ch.exchange_declare(exchange=EXCHANGE, exchange_type="direct", durable=True, auto_delete=False)
    return conn, ch


def declare(ch, queue):
    ch.queue_declare(queue=queue, durable=True, exclusive=False, auto_delete=False, arguments={})
    ch.queue_bind(queue=queue, exchange=EXCHANGE, routing_key=queue)


def publish(ch, routing_key, body):
    # Vumi's publisher: persistent, nothing else, no confirms.
    ch.basic_publish(exchange=EXCHANGE, routing_key=routing_key, body=body,
                     properties=pika.BasicProperties(delivery_mode=2))


def encode(msg):
    # json.dumps as Vumi called it: ensure_ascii (the default), Python's separators.
    return json.dumps(msg).encode("ascii")


def say(obj):
    print(json.dumps(obj), flush=True)


# What Vumi 0.6 sends in content besides plain text: NUL and other controls (escaped as \u0000,
# \u0007, \u001b), astral-plane characters (as surrogate pairs), line breaks.
CONTENTS = [
    "hello %d caf\u00e9",
    "nul\x00in %d",
    "grin \U0001F600 %d",
    "bel\x07 esc\x1b[2J %d",
    "two\nlines %d",
]


def inbound(connector, n):
    return {
        "message_version": "20110921",
        "message_type": "user_message",
        "message_id": uuid.uuid4().hex,
        "timestamp": now(),
        "routing_metadata": {},
        "helper_metadata": {},
        "to_addr": "*120*8864#",
        "from_addr": "+2783%07d" % n,
        "in_reply_to": None,
        "session_event": "resume",
        "content": CONTENTS[n % len(CONTENTS)] % n,
        "transport_name": connector,
        "transport_type": "ussd",
        "transport_metadata": {"legacy": True},
        "group": None,
        "provider": None,
    }


def run_transport(connector, n):
    conn, ch = connect()
    declare(ch, connector + ".outbound")
    declare(ch, connector + ".event")
    say({"ready": True})
    # A body Vumi itself would stall on: it goes to failures, and the queue keeps flowing.
    publish(ch, connector + ".inbound", b"{not json")
    sent = {}
    for i in range(n):
        m = inbound(connector, i)
        sent[m["message_id"]] = m
        publish(ch, connector + ".inbound", encode(m))
    got = 0
    for method, props, body in ch.consume(connector + ".outbound", inactivity_timeout=30):
        if method is None:
            say({"error": "no reply within 30 s", "got": got})
            sys.exit(1)
        reply = json.loads(body)
        say({"reply": reply, "ascii": all(b < 128 for b in body),
             "delivery_mode": props.delivery_mode,
             "asked": sent.get(reply.get("in_reply_to"))})
        ch.basic_ack(method.delivery_tag)
        got += 1
        if got == n:
            break
    conn.close()


def run_app(connector, n):
    conn, ch = connect()
    declare(ch, connector + ".inbound")
    declare(ch, connector + ".event")
    ch.basic_qos(prefetch_count=20)  # Vumi's default
    say({"ready": True})
    answered = 0
    for method, props, body in ch.consume(connector + ".inbound", inactivity_timeout=30):
        if method is None:
            say({"error": "no inbound within 30 s", "answered": answered})
            sys.exit(1)
        msg = json.loads(body)
        if msg.get("content") is not None:
            reply = dict(msg)
            reply.update({
                "message_id": uuid.uuid4().hex,
                "timestamp": now(),
                "in_reply_to": msg["message_id"],
                "to_addr": msg["from_addr"],
                "from_addr": msg["to_addr"],
                "session_event": None,
                "content": "legacy: " + msg["content"],
            })
            publish(ch, connector + ".outbound", encode(reply))
            say({"answered": msg})
            answered += 1
        ch.basic_ack(method.delivery_tag)
        if answered == n:
            break
    conn.close()


if __name__ == "__main__":
    mode, connector, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    {"transport": run_transport, "app": run_app}[mode](connector, n)
