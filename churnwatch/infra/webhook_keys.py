"""Standard Webhooks secrets: ``whsec_`` followed by the base64 of 24 to 64 random bytes.

Checked when the settings load (a plain-text secret is refused with how to make one) and
turned into the HMAC key by the webhook sink (``alerting.webhook``)."""

from __future__ import annotations

import base64
import binascii

SECRET_PREFIX = "whsec_"
GENERATE_SECRET = ("python3 -c \"import base64, secrets; "
                   "print('whsec_' + base64.b64encode(secrets.token_bytes(32)).decode())\"")

def secret_key(secret: str | bytes) -> bytes:
    """HMAC key of a ``whsec_<base64>`` secret (raw ``bytes`` are the key itself). Raises
    ``ValueError`` for anything else, saying how to make a valid one."""
    if isinstance(secret, bytes):
        return secret
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"must be {SECRET_PREFIX}<base64> (Standard Webhooks; a plain-text "
                         f"secret cannot be verified by standard receivers): generate one with "
                         f"{GENERATE_SECRET} and configure the receiver with the same value")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except binascii.Error:
        raise ValueError(f"invalid base64 after '{SECRET_PREFIX}': generate a secret with "
                         f"{GENERATE_SECRET}") from None
    if not 24 <= len(key) <= 64:
        raise ValueError(f"the key after '{SECRET_PREFIX}' decodes to {len(key)} bytes; "
                         f"Standard Webhooks keys are 24 to 64 random bytes: generate one with "
                         f"{GENERATE_SECRET}")
    return key
