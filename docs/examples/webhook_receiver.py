#!/usr/bin/env python3
"""A Coffer webhook receiver: Python 3 standard library only.

    WEBHOOK_SECRET=whsec_... PORT=8000 python3 docs/examples/webhook_receiver.py

It checks `Coffer-Signature` over the raw body (5-minute tolerance), skips an
event id it has already handled (deliveries are at least once), answers 2xx
at once and would hand the event to a queue; anything else answers 400.
"""

import hashlib
import hmac
import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE_SECONDS = 5 * 60
MAX_BODY_BYTES = 1024 * 1024


def verify(secret, header, body, now=None, tolerance=TOLERANCE_SECONDS):
    """True when `header` (t=...,v1=...) signs `body` (bytes) under `secret`.

    The key is the secret exactly as shown, `whsec_` prefix included; the
    message is b"{t}." + the raw body. Several v1 entries may be present.
    """
    timestamp, signatures = None, []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            return False
        if key == "t":
            if timestamp is not None or not value.isdigit():
                return False
            timestamp = int(value)
        elif key == "v1":
            signatures.append(value.strip().lower())
    if timestamp is None:
        return False
    now = int(time.time()) if now is None else now
    if abs(now - timestamp) > tolerance:
        return False
    expected = hmac.new(
        secret.encode("utf-8"), str(timestamp).encode("ascii") + b"." + body, hashlib.sha256
    ).hexdigest()
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures)


SEEN_EVENT_IDS = set()  # use your database in production


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        if length > MAX_BODY_BYTES:
            return self.answer(413)
        body = self.rfile.read(length)
        secret = os.environ["WEBHOOK_SECRET"]
        if not verify(secret, self.headers.get("Coffer-Signature", ""), body):
            return self.answer(400)
        event_id = self.headers.get("Coffer-Event-Id", "")
        event_type = self.headers.get("Coffer-Event-Type", "")
        if event_id in SEEN_EVENT_IDS:
            return self.answer(200)  # a repeat: already handled
        SEEN_EVENT_IDS.add(event_id)
        event = json.loads(body)
        print(f"verified {event_type} {event_id}: {len(event)} top-level fields", flush=True)
        self.answer(200)

    def answer(self, status):
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8000"))
    ThreadingHTTPServer(("127.0.0.1", port), Receiver).serve_forever()
