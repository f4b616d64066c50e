#!/usr/bin/env node
// An SMSC built on the npm `smpp` package (node-smpp), the peer of vumi's ESME in
// tests/e2e/smpp_peers.rs. Every PDU is encoded and decoded by that package, never by vumi's
// code: a codec bug vumi's ESME and `vumi fake-smsc` share cannot pass against it.
//
//   node smsc.js --modules <dir holding node_modules> [--port 0] [--host 127.0.0.1]
//
// It accepts bind_transceiver (also _transmitter/_receiver) as smppclient1/password, answers
// every submit_sm with a decimal message_id of its own, reassembles long messages (UDH with an
// 8- or 16-bit reference, or SAR TLVs) from the texts the package decoded part by part, and sends
// a delivery receipt for every submit_sm that asks for one: deliver_sm with esm_class 0x04, TLVs
// receipted_message_id + message_state (2, DELIVERED) and the Appendix B text.
//
// Its interface is JSON lines: events on stdout, one object each, the first
// {"event":"ready","smpp":"127.0.0.1:<port>"}; commands on stdin:
//
//   {"cmd":"mo","from":"...","to":"...","text":"...","data_coding":0,"parts":1}
//
// sends an MO deliver_sm to the newest receiving bind (`data_coding` omitted: the package picks
// one; `parts` > 1: that many UDH parts, split between characters). It exits when stdin closes.
"use strict";

const path = require("path");
const readline = require("readline");

function arg(name, dflt) {
    const i = process.argv.indexOf(name);
    return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}

const modules = path.resolve(arg("--modules", path.join(__dirname, "node_modules")));
let smpp;
try {
    smpp = require(path.join(modules, "smpp"));
} catch (e) {
    process.stderr.write(`smsc.js: cannot load the npm smpp package from ${modules} (run tests/smpp/setup.sh): ${e.message}\n`);
    process.exit(2);
}

const SYSTEM_ID = "smppclient1";
const PASSWORD = "password";

// A lone surrogate (half an emoji) is written as U+FFFD: JSON readers refuse "\ud83d" alone.
// Whether a text had one is reported on its own (`split_surrogate`, `replacement_chars`).
const wellFormed = (s) => s.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, "\ufffd");

function emit(obj) {
    process.stdout.write(JSON.stringify(obj, (_, v) => (typeof v === "string" ? wellFormed(v) : v)) + "\n");
}

const hex = (b) => Buffer.from(b).toString("hex");

// Whether a part's text begins or ends inside a surrogate pair (a part boundary that split an
// emoji), or holds U+FFFD (octets the package could not decode).
function damage(text) {
    const first = text.charCodeAt(0);
    const last = text.charCodeAt(text.length - 1);
    return {
        split_surrogate: (last >= 0xd800 && last <= 0xdbff) || (first >= 0xdc00 && first <= 0xdfff),
        replacement_chars: (text.match(/\uFFFD/g) || []).length,
    };
}

// The concatenation info of a decoded submit_sm: from its UDH (IE 0x00 or 0x08), else SAR TLVs.
function concatOf(pdu, udhList) {
    for (const ie of udhList) {
        if (ie[0] === 0x00 && ie[1] === 3) return { scheme: "udh8", ref: ie[2], total: ie[3], seq: ie[4] };
        if (ie[0] === 0x08 && ie[1] === 4) return { scheme: "udh16", ref: ie.readUInt16BE(2), total: ie[4], seq: ie[5] };
    }
    if (pdu.sar_msg_ref_num !== undefined && pdu.sar_total_segments !== undefined && pdu.sar_segment_seqnum !== undefined) {
        return { scheme: "sar", ref: pdu.sar_msg_ref_num, total: pdu.sar_total_segments, seq: pdu.sar_segment_seqnum };
    }
    return null;
}

let nextId = 1000;
const pending = new Map(); // "from|to|scheme|ref|total" -> {seq: part}
let receivers = []; // bound sessions that may be sent deliver_sm, newest last

function stamp(d) {
    const p = (n) => String(n).padStart(2, "0");
    return `${p(d.getUTCFullYear() % 100)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}`;
}

function sendReceipt(session, sm, id, text) {
    const now = stamp(new Date());
    const excerpt = text.replace(/[^A-Za-z0-9 ]/g, "").slice(0, 20);
    const body = `id:${id} sub:001 dlvrd:001 submit date:${now} done date:${now} stat:DELIVRD err:000 text:${excerpt}`;
    session.deliver_sm(
        {
            source_addr_ton: sm.dest_addr_ton,
            source_addr_npi: sm.dest_addr_npi,
            source_addr: sm.destination_addr,
            dest_addr_ton: sm.source_addr_ton,
            dest_addr_npi: sm.source_addr_npi,
            destination_addr: sm.source_addr,
            esm_class: 0x04,
            data_coding: 0,
            short_message: body,
            receipted_message_id: id,
            message_state: 2, // DELIVERED
        },
        (resp) => emit({ event: "receipt", message_id: id, command_status: resp.command_status }),
    );
}

function onSubmit(session, pdu) {
    const id = String(nextId++);
    const sm = pdu.short_message || {};
    const udhList = sm.udh || [];
    let text = typeof sm.message === "string" ? sm.message : "";
    let payload = false;
    if (!text && pdu.message_payload && typeof pdu.message_payload.message === "string") {
        text = pdu.message_payload.message;
        payload = true;
    }
    const concat = concatOf(pdu, udhList);
    emit({
        event: "submit_sm",
        message_id: id,
        source_addr: pdu.source_addr,
        destination_addr: pdu.destination_addr,
        data_coding: pdu.data_coding,
        esm_class: pdu.esm_class,
        registered_delivery: pdu.registered_delivery,
        udh: udhList.map(hex),
        payload,
        concat,
        text,
        ...damage(text),
    });
    const wantsReceipt = (pdu.registered_delivery & 0x03) !== 0;
    session.send(pdu.response({ message_id: id }), () => {
        if (wantsReceipt) sendReceipt(session, pdu, id, text);
    });

    const base = { from: pdu.source_addr, to: pdu.destination_addr, data_coding: pdu.data_coding };
    if (!concat || concat.total <= 1) {
        emit({ event: "message", ...base, text, parts: 1, message_ids: [id], method: concat ? concat.scheme : payload ? "payload" : "single", ...damage(text) });
        return;
    }
    const key = [pdu.source_addr, pdu.destination_addr, concat.scheme, concat.ref, concat.total].join("|");
    const set = pending.get(key) || {};
    set[concat.seq] = { id, text };
    pending.set(key, set);
    const seqs = Object.keys(set);
    if (seqs.length < concat.total) return;
    pending.delete(key);
    const ordered = [];
    for (let i = 1; i <= concat.total; i++) {
        if (!set[i]) {
            emit({ event: "error", reason: `parts of ${key} numbered ${seqs.join(",")}, not 1..${concat.total}` });
            return;
        }
        ordered.push(set[i]);
    }
    const whole = ordered.map((p) => p.text).join("");
    emit({
        event: "message",
        ...base,
        text: whole,
        parts: concat.total,
        message_ids: ordered.map((p) => p.id),
        method: concat.scheme,
        // Whether any part on its own began or ended inside a surrogate pair.
        split_surrogate: ordered.some((p) => damage(p.text).split_surrogate),
        replacement_chars: damage(whole).replacement_chars,
    });
}

const server = smpp.createServer((session) => {
    let bound = null;
    const bind = (command, receives) => (pdu) => {
        const ok = pdu.system_id === SYSTEM_ID && pdu.password === PASSWORD;
        emit({ event: "bind", command, system_id: pdu.system_id, ok });
        if (!ok) {
            session.send(pdu.response({ command_status: smpp.ESME_RBINDFAIL }));
            session.close();
            return;
        }
        bound = command;
        session.send(pdu.response({ system_id: "npm-smsc" }));
        if (receives) receivers.push(session);
    };
    session.on("bind_transceiver", bind("bind_transceiver", true));
    session.on("bind_receiver", bind("bind_receiver", true));
    session.on("bind_transmitter", bind("bind_transmitter", false));
    session.on("submit_sm", (pdu) => {
        if (bound === null || bound === "bind_receiver") {
            session.send(pdu.response({ command_status: smpp.ESME_RINVBNDSTS }));
            return;
        }
        onSubmit(session, pdu);
    });
    session.on("enquire_link", (pdu) => session.send(pdu.response()));
    session.on("unbind", (pdu) => {
        emit({ event: "unbind" });
        session.send(pdu.response());
        session.close();
    });
    session.on("unknown", (pdu) => {
        emit({ event: "error", reason: `unknown PDU command_id 0x${pdu.command_id.toString(16)}` });
        session.send(pdu.response());
    });
    session.on("generic_nack", (pdu) => emit({ event: "error", reason: `generic_nack, status ${pdu.command_status}` }));
    session.on("error", (e) => emit({ event: "error", reason: `session: ${e.message}` }));
    session.on("close", () => {
        receivers = receivers.filter((s) => s !== session);
        emit({ event: "close", bound });
    });
});

// Split `text` into `n` runs of whole characters (code points), as even as can be.
function splitChars(text, n) {
    const chars = Array.from(text);
    const size = Math.ceil(chars.length / n);
    const out = [];
    for (let i = 0; i < chars.length; i += size) out.push(chars.slice(i, i + size).join(""));
    return out;
}

let mref = 0;
function mo(cmd) {
    const session = receivers[receivers.length - 1];
    if (!session) {
        emit({ event: "mo_error", reason: "nothing bound to receive" });
        return;
    }
    const chunks = (cmd.parts || 1) > 1 ? splitChars(cmd.text, cmd.parts) : [cmd.text];
    const ref = mref++ & 0xff;
    chunks.forEach((chunk, i) => {
        const opts = { source_addr: cmd.from, destination_addr: cmd.to, esm_class: 0 };
        if (cmd.data_coding !== undefined && cmd.data_coding !== null) opts.data_coding = cmd.data_coding;
        opts.short_message = chunks.length > 1 ? { udh: Buffer.from([0x05, 0x00, 0x03, ref, chunks.length, i + 1]), message: chunk } : chunk;
        session.deliver_sm(opts, (resp) => emit({ event: "mo_resp", part: i + 1, parts: chunks.length, command_status: resp.command_status }));
    });
}

readline.createInterface({ input: process.stdin }).on("line", (line) => {
    if (!line.trim()) return;
    let cmd;
    try {
        cmd = JSON.parse(line);
    } catch (e) {
        emit({ event: "error", reason: `bad command: ${e.message}` });
        return;
    }
    if (cmd.cmd === "mo") mo(cmd);
    else emit({ event: "error", reason: `unknown command ${cmd.cmd}` });
}).on("close", () => process.exit(0));

server.on("error", (e) => {
    process.stderr.write(`smsc.js: ${e.message}\n`);
    process.exit(1);
});
server.listen(Number(arg("--port", "0")), arg("--host", "127.0.0.1"), () => {
    const a = server.address();
    emit({ event: "ready", smpp: `${a.address}:${a.port}` });
});
