"""Echo, as a Python component for `world application` of vumi:plugin@0.2.1.

A smoke test of the 0.2 contract under componentize-py, not an SDK. Behaves like the Rust echo
plugin (plugins/echo): a new session with no content is answered `echo: ready`; any other
message is answered with its own content (empty if it has none).

Built by ../build.sh with `componentize-py -d wit -w application componentize app`, which
generates the `wit_world` bindings itself: nothing here is generated or checked in.
Nothing may call a host import at module top level: that code runs at build time (Wizer).
"""

from componentize_py_types import Err

import wit_world
from wit_world.imports import message, types


class WitWorld(wit_world.WitWorld):
    def handle_user_message(self, message: message.UserMessage) -> None:
        content = message.content()
        try:
            if message.session_event() == types.SessionEvent.NEW and content is None:
                message.reply("echo: ready")
            else:
                message.reply(content if content is not None else "")
        except Err as e:
            # `reply` raised a send-error: the message cannot be answered.
            raise Err(types.HandlerError_Reject(f"reply refused: {e.value!r}"))

    def handle_event(self, event: message.Event) -> None:
        return None
