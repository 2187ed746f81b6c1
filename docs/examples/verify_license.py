"""Verify a Coffer license key offline (Python 3, `pip install cryptography`).

    python3 verify_license.py PUBLIC_KEY LICENSE_KEY
"""
import base64
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify(public_key: str, license_key: str) -> dict:
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key))
    payload, signature = license_key.split(".")
    payload = b64url(payload)
    key.verify(b64url(signature), payload)  # raises InvalidSignature
    return json.loads(payload)


if __name__ == "__main__":
    try:
        print("valid license:", verify(sys.argv[1], sys.argv[2]))
    except (InvalidSignature, ValueError):
        print("invalid license", file=sys.stderr)
        sys.exit(1)
