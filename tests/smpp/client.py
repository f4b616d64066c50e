"""An ESME built on PyPI `smpplib`, the peer of `vumi fake-smsc` in tests/e2e/smpp_peers.rs.

    python client.py HOST:PORT --send TEXT [--send TEXT ...] [--from ADDR] [--to ADDR]

Binds transceiver as smppclient1/password and sends each TEXT as smpplib's own
`smpplib.gsm.make_parts` encodes and splits it (GSM 03.38 if it can, else UCS-2; UDH parts when
long), asking for delivery receipts. It reads every submit_sm_resp and every deliver_sm until each
submit_sm has its response and a receipt (or the deadline passes), unbinds, and prints one JSON
object on stdout:

    {"bound": true,
     "messages": [{"text", "data_coding", "esm_class", "parts": [{"sequence", "status",
                   "message_id", "udh", "body_hex"}]}],
     "deliver_sm": [{"esm_class", "data_coding", "receipted_message_id", "message_state",
                     "short_message", "short_message_hex"}],
     "complete": true}

Nothing here is vumi's: every octet is smpplib's encoding and decoding.
"""

import argparse
import json
import select
import sys
import time

import smpplib.client
import smpplib.consts
import smpplib.gsm


def text(b):
    if b is None:
        return None
    return b.decode("latin-1") if isinstance(b, bytes) else str(b)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("smsc", help="HOST:PORT")
    ap.add_argument("--send", action="append", default=[], help="a message text (repeatable)")
    ap.add_argument("--from", dest="source", default="1234")
    ap.add_argument("--to", dest="dest", default="27820000001")
    ap.add_argument("--deadline", type=float, default=20.0, help="seconds to wait for responses and receipts")
    args = ap.parse_args()
    host, port = args.smsc.rsplit(":", 1)

    client = smpplib.client.Client(host, int(port), timeout=5, allow_unknown_opt_params=True)
    resps = {}  # sequence -> (status, message_id)
    delivered = []

    def sent(pdu, **_):
        resps[pdu.sequence] = (pdu.status, text(pdu.message_id))

    def received(pdu, **_):
        sm = pdu.short_message or b""
        delivered.append({
            "esm_class": pdu.esm_class,
            "data_coding": pdu.data_coding,
            "receipted_message_id": text(getattr(pdu, "receipted_message_id", None)),
            "message_state": getattr(pdu, "message_state", None),
            "short_message": text(sm),
            "short_message_hex": sm.hex() if isinstance(sm, bytes) else None,
        })
        return smpplib.consts.SMPP_ESME_ROK

    client.set_message_sent_handler(sent)
    client.set_message_received_handler(received)
    client.connect()
    client.bind_transceiver(system_id="smppclient1", password="password")

    messages = []
    for t in args.send:
        parts, data_coding, esm_class = smpplib.gsm.make_parts(t)
        msg = {"text": t, "data_coding": data_coding, "esm_class": esm_class, "parts": []}
        for part in parts:
            pdu = client.send_message(
                source_addr_ton=smpplib.consts.SMPP_TON_INTL,
                source_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
                source_addr=args.source,
                dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
                dest_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
                destination_addr=args.dest,
                short_message=part,
                data_coding=data_coding,
                esm_class=esm_class,
                registered_delivery=True,
            )
            udh = part[: part[0] + 1] if esm_class & smpplib.consts.SMPP_GSMFEAT_UDHI else b""
            body = part[len(udh):]
            msg["parts"].append({"sequence": pdu.sequence, "udh": udh.hex() or None, "body_hex": body.hex()})
        messages.append(msg)

    submits = sum(len(m["parts"]) for m in messages)
    deadline = time.monotonic() + args.deadline
    complete = False
    while time.monotonic() < deadline:
        receipts = [d for d in delivered if d["esm_class"] & 0x3C == 0x04]
        if len(resps) >= submits and len(receipts) >= submits:
            complete = True
            break
        # Read only once a PDU has begun to arrive: a socket timeout mid-PDU would lose octets.
        readable, _, _ = select.select([client._socket], [], [], 0.1)
        if readable:
            client.read_once(auto_send_enquire_link=False)

    for m in messages:
        for p in m["parts"]:
            status, mid = resps.get(p["sequence"], (None, None))
            p["status"], p["message_id"] = status, mid
    try:
        client.unbind()
    except Exception as e:  # the result is printed either way; the test reads it
        print(f"client.py: unbind: {e!r}", file=sys.stderr)
    client.disconnect()
    json.dump({"bound": True, "messages": messages, "deliver_sm": delivered, "complete": complete}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
