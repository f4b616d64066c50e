// Echo, as a JavaScript component for `world application` of vumi:plugin@0.2.1.
//
// A smoke test of the 0.2 contract under componentize-js (StarlingMonkey), not an SDK. Behaves
// like the Rust echo plugin (plugins/echo): a new session with no content is answered
// `echo: ready`; any other message is answered with its own content (empty if it has none).
//
// Built by ../build.sh with
//   componentize-js --wit wit --world-name application --disable http fetch-event app.js
// The world's exports are this module's exports, in camelCase; `message` is the borrowed
// `user-message` resource, its getters and `reply` are methods. An `option<string>` is
// `undefined` when absent, an enum is its case name as a string. A `result` export returns
// normally for `ok` and throws its `err` payload (here a `handler-error` variant object,
// `{ tag, val }`); an import's `err` arrives as a thrown ComponentError whose `payload` is the
// `send-error`. Nothing may call a host import at module top level: that runs at build time.

function rejectFrom(e) {
  const payload = e && e.payload !== undefined ? e.payload : e;
  let text;
  try {
    text = typeof payload === 'string' ? payload : JSON.stringify(payload);
  } catch {
    text = String(payload);
  }
  return { tag: 'reject', val: `reply refused: ${text}` };
}

export function handleUserMessage(message) {
  const content = message.content();
  try {
    if (message.sessionEvent() === 'new' && content === undefined) {
      message.reply('echo: ready');
    } else {
      message.reply(content ?? '');
    }
  } catch (e) {
    // Throw a plain value, not an Error: StarlingMonkey turns a thrown Error into a trap.
    throw rejectFrom(e);
  }
}

export function handleEvent(_event) {
  // Nothing to do: acks, nacks and delivery reports are ignored.
}
