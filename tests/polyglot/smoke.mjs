// Runs a transpiled echo component (from `jco transpile --instantiation async`) under Node with a
// mock of the vumi:plugin@0.2.1 imports and a deny-all WASI shim, and checks echo's behaviour.
// This is not the vumi host: it only shows that the guest side of the 0.2 contract (borrowed
// `user-message` in an export, its getters, `reply`, `result<_, handler-error>`) works as built.
// The Rust test against the real host is the host engineer's.
//
// Usage (build.sh runs it): node smoke.mjs <node-dir> <transpiled-dir> <name>
//   node-dir:       where build.sh ran `npm ci` (holds node_modules/@bytecodealliance/preview2-shim)
//   transpiled-dir: output of `jco transpile <name>.wasm --instantiation async -o <dir>`
// Prints one line per check and `N passed, N failed`; exits 1 if any failed.

import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const [nodeDir, dir, name] = process.argv.slice(2);
if (!name) {
  console.error('usage: node smoke.mjs <node-dir> <transpiled-dir> <name>');
  process.exit(2);
}
const shimPath = join(resolve(nodeDir), 'node_modules/@bytecodealliance/preview2-shim/dist/common/instantiation.js');
const { WASIShim } = await import(pathToFileURL(shimPath).href);
const { instantiate } = await import(pathToFileURL(join(resolve(dir), `${name}.js`)).href);

// What the guest did through the imports, per call.
let sent = [];
let logs = [];
let replyError = null; // when set, `reply` answers err(replyError)
let calls = {}; // import name -> count, to see which getters the guest used

const count = (what) => { calls[what] = (calls[what] ?? 0) + 1; };

class UserMessage {
  constructor(fields) { this.f = { messageId: 'a'.repeat(32), endpoint: 'default', ...fields }; }
  messageId() { count('message-id'); return this.f.messageId; }
  timestamp() { count('timestamp'); return '2026-01-01 00:00:00.000000'; }
  toAddr() { count('to-addr'); return this.f.toAddr; }
  fromAddr() { count('from-addr'); return this.f.fromAddr; }
  toAddrType() { count('to-addr-type'); return undefined; }
  fromAddrType() { count('from-addr-type'); return undefined; }
  inReplyTo() { count('in-reply-to'); return undefined; }
  sessionEvent() { count('session-event'); return this.f.sessionEvent; }
  content() { count('content'); return this.f.content; }
  transportName() { count('transport-name'); return 'telnet'; }
  transportType() { count('transport-type'); return 'telnet'; }
  group() { count('group'); return undefined; }
  provider() { count('provider'); return undefined; }
  endpoint() { count('endpoint'); return this.f.endpoint; }
  metadataJson(_which) { count('metadata-json'); return '{}'; }
  metadataGet(_which, _key) { count('metadata-get'); return undefined; }
  #send(kind, content, endSession) {
    count(kind);
    if (replyError) return { tag: 'err', val: replyError };
    sent.push({ kind, content, endSession });
    return { tag: 'ok', val: 'b'.repeat(32) };
  }
  reply(content) { return this.#send('reply', content, false); }
  replyAndClose(content) { return this.#send('reply-and-close', content, true); }
  replyToGroup(content, endSession) { return this.#send('reply-to-group', content, endSession); }
}

class Event {
  eventId() { count('event-id'); return 'c'.repeat(32); }
  timestamp() { count('timestamp'); return '2026-01-01 00:00:00.000000'; }
  userMessageId() { count('user-message-id'); return 'b'.repeat(32); }
  kind() { count('kind'); return { tag: 'ack', val: 'smsc-1' }; }
  transportName() { count('transport-name'); return 'telnet'; }
  metadataJson(_which) { count('metadata-json'); return '{}'; }
  metadataGet(_which, _key) { count('metadata-get'); return undefined; }
}

const vumi = {
  'vumi:plugin/types': {},
  'vumi:plugin/message': { UserMessage, Event },
  'vumi:plugin/kv': {
    get: () => { count('kv.get'); return { tag: 'ok', val: undefined }; },
    set: () => { count('kv.set'); return { tag: 'ok', val: undefined }; },
    delete: () => { count('kv.delete'); return { tag: 'ok', val: false }; },
    incr: (_k, by) => { count('kv.incr'); return { tag: 'ok', val: by }; },
  },
  'vumi:plugin/config': {
    get: () => { count('config.get'); return undefined; },
    getJson: () => { count('config.get-json'); return '{}'; },
  },
  'vumi:plugin/log': { log: (level, message) => { count('log'); logs.push([level, message]); } },
  'vumi:plugin/outbound': {
    sendTo: (to, content) => { count('send-to'); sent.push({ kind: 'send-to', to, content }); return { tag: 'ok', val: 'd'.repeat(32) }; },
  },  // Since 0.2.1; echo never calls it.
  'vumi:plugin/http': { fetch: () => { count('http'); return { tag: 'err', val: { tag: 'not-allowed', val: 'no hosts allowed in the smoke test' } }; } },
};

// Deny-all WASI, as the host's empty WasiCtx: no preopens, no env, no network.
const wasi = new WASIShim({ sandbox: { preopens: {}, env: {}, args: [name], enableNetwork: false } }).getImportObject();
const imports = { ...wasi, ...vumi };

const t0 = performance.now();
const component = await instantiate(
  async (file) => WebAssembly.compile(await readFile(join(resolve(dir), file))),
  imports,
);
const instantiateMs = performance.now() - t0;

let passed = 0;
let failed = 0;
function check(label, ok, detail) {
  if (ok) { passed++; console.log(`ok   ${name}: ${label}`); }
  else { failed++; console.log(`FAIL ${name}: ${label}: ${detail}`); }
}

function handle(fields) {
  sent = []; logs = []; calls = {};
  try {
    const r = component.handleUserMessage(new UserMessage(fields));
    return { ok: true, value: r, sent };
  } catch (e) {
    // An err comes as a thrown value with the handler-error in `payload`; a trap as an Error.
    if (e && e.payload !== undefined) return { ok: false, error: e.payload, sent };
    return { ok: false, error: e instanceof Error ? `trap: ${e.message}` : e, sent };
  }
}

function expectReply(label, fields, content) {
  const r = handle(fields);
  const got = JSON.stringify(r.sent);
  const want = JSON.stringify([{ kind: 'reply', content, endSession: false }]);
  check(label, r.ok && got === want, r.ok ? `sent ${got}, want ${want}` : `err ${JSON.stringify(r.error)}`);
}

expectReply('new session, no content -> "echo: ready"', { sessionEvent: 'new' }, 'echo: ready');
expectReply('new session with content -> content', { sessionEvent: 'new', content: '*120#' }, '*120#');
expectReply('plain SMS -> content', { content: 'hello' }, 'hello');
expectReply('resume, no content -> ""', { sessionEvent: 'resume' }, '');
expectReply('close with content -> content', { sessionEvent: 'close', content: 'bye' }, 'bye');
expectReply('non-ASCII content survives', { content: 'ñandú ✓ 😀' }, 'ñandú ✓ 😀');

// A refused reply comes back as err(handler-error::reject(..)), and the instance stays usable.
replyError = { tag: 'too-many-sends', val: 5 };
{
  const r = handle({ content: 'x' });
  check('send-error from reply -> err(reject)', !r.ok && r.error && r.error.tag === 'reject' && typeof r.error.val === 'string',
    r.ok ? 'returned ok' : `err ${JSON.stringify(r.error)}`);
  if (!r.ok) console.log(`     (err payload: ${JSON.stringify(r.error)})`);
}
replyError = null;
expectReply('instance usable after an err', { content: 'again' }, 'again');

{
  calls = {}; sent = [];
  let ok = true; let detail = '';
  try { component.handleEvent(new Event()); } catch (e) { ok = false; detail = String(e && e.payload !== undefined ? JSON.stringify(e.payload) : e); }
  check('handle-event -> ok, sends nothing', ok && sent.length === 0, detail || `sent ${JSON.stringify(sent)}`);
}

// Many calls on one instance: borrowed handles must not leak or go stale.
{
  let bad = 0;
  const t = performance.now();
  const n = 2000;
  for (let i = 0; i < n; i++) {
    const r = handle({ content: `m${i}` });
    if (!r.ok || r.sent.length !== 1 || r.sent[0].content !== `m${i}`) bad++;
  }
  const us = ((performance.now() - t) * 1000) / n;
  check(`${n} calls on one instance`, bad === 0, `${bad} wrong`);
  console.log(`     (instantiate ${instantiateMs.toFixed(0)} ms under node; ${us.toFixed(1)} µs/call under jco's JS host, not wasmtime)`);
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
