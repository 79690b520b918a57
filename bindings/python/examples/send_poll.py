#!/usr/bin/env python3
"""Send a document to a partner through a Layer Security Messaging Service, then fetch it as
that partner, with the Python binding's Client (as examples-c/send_poll.c does in C):

    send_poll.py SENDER_CONFIG RECIPIENT_CONFIG FILE TO

With the sender's configuration (the file `layersec init` writes) FILE is sent to partner TO:
sealed for TO, carried in a signed AS4 message, the service's signed receipt checked. Then the
recipient polls: the document is verified, written to its inbox and receipted. Then the sender
polls and finds the recipient's signed receipt. Exits 0 only if exactly that document arrived
and its receipt is "processed".

`make example-python` runs it against a throwaway service (scripts/example-service.sh).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bindings/python

import layersec  # noqa: E402


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print("usage: send_poll.py SENDER_CONFIG RECIPIENT_CONFIG FILE TO", file=sys.stderr)
        return 2
    sender_config, recipient_config, file, to = argv
    try:
        with layersec.Client(sender_config) as sender, layersec.Client(recipient_config) as rcpt:
            message_id = sender.send_file(file, to)
            print(f"sent {Path(file).name} to {to}: MessageId {message_id}")
            received = rcpt.poll()
            for r in received:
                print(f"received {r.name} from {r.sender} ({r.size} bytes) -> {r.path}")
            ok = [r for r in received if r.message_id == message_id]
            sender.poll()  # the recipient's signed receipt
            state = sender.receipt_state(message_id)
            print(f"receipt of {message_id}: {state}")
    except layersec.QueuedForRetry as e:
        print(f"send_poll: not delivered yet, queued as {e.message_id}: {e.cause}", file=sys.stderr)
        return 1
    except layersec.LayerSecError as e:
        print(f"send_poll: {e}", file=sys.stderr)
        return 1
    size = Path(file).stat().st_size
    if len(received) != 1 or len(ok) != 1 or ok[0].size != size or state != "processed":
        print("send_poll: the document or its receipt did not come back as expected",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
