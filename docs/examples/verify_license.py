"""Verify a Coffer license key offline (Python 3, `pip install cryptography`).

    python3 verify_license.py PUBLIC_KEY LICENSE_KEY [REVOCATION_LIST]

With REVOCATION_LIST (your list's URL, `https://…/api/v1/vendors/SLUG/revocations`,
or a file holding what that URL answered) the key is also checked against
your signed revocation list: a refunded order's key is refused.
"""
import base64
import hashlib
import json
import sys
import urllib.request

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

# What a revocation list's signature covers before the list's bytes.
REVOCATION_LIST_CONTEXT = b"coffer.revocation-list.v1\x00"


def b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify(public_key: str, license_key: str) -> dict:
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key))
    payload, signature = license_key.split(".")
    payload = b64url(payload)
    key.verify(b64url(signature), payload)  # raises InvalidSignature
    return json.loads(payload)


def revocation_list(public_key: str, answer: dict) -> dict:
    """The list inside `{"list", "signature"}`, once its signature verifies."""
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key))
    listed = b64url(answer["list"])
    key.verify(b64url(answer["signature"]), REVOCATION_LIST_CONTEXT + listed)  # raises InvalidSignature
    return json.loads(listed)


def is_revoked(revocations: dict, license_key: str, claims: dict) -> bool:
    digest = hashlib.sha256(license_key.encode()).hexdigest()
    for entry in revocations["revoked"]:
        if entry.get("key_sha256") == digest:
            return True
        # Keys issued before Coffer kept hashes are listed by their line.
        if (entry["order_id"], entry["product_id"]) == (claims["order_id"], claims["product_id"]):
            return True
    return False


def fetch(source: str) -> dict:
    if source.startswith(("https://", "http://")):
        with urllib.request.urlopen(source, timeout=10) as answer:
            return json.load(answer)
    with open(source, encoding="utf-8") as saved:
        return json.load(saved)


if __name__ == "__main__":
    try:
        claims = verify(sys.argv[1], sys.argv[2])
        if len(sys.argv) > 3:
            revocations = revocation_list(sys.argv[1], fetch(sys.argv[3]))
            print("revocation list of", revocations["vendor"], "issued", revocations["issued_at"])
            if is_revoked(revocations, sys.argv[2], claims):
                print("revoked license:", claims, file=sys.stderr)
                sys.exit(1)
        print("valid license:", claims)
    except (InvalidSignature, ValueError, KeyError):
        print("invalid license, or a revocation list that does not verify", file=sys.stderr)
        sys.exit(1)
    except OSError as e:
        print("the revocation list could not be read:", e, file=sys.stderr)
        sys.exit(2)
