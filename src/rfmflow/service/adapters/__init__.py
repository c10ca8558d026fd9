"""Adapters from third-party payloads to :class:`~rfmflow.service.events.EventIn`.

Pure functions, no database and no HTTP: the endpoints pass in the raw body, the headers they
need and, for Segment, the time the request arrived.

- :mod:`.segment`: Segment / RudderStack ``identify``, ``track``, ``page``, ``screen`` and
  ``batch`` messages, and the write key from basic auth.
- :mod:`.stripe`: ``payment_intent.succeeded`` and ``charge.refunded``; ``Stripe-Signature``.
- :mod:`.shopify`: ``orders/create`` and ``refunds/create``; ``X-Shopify-Hmac-Sha256``.
- :mod:`.woocommerce`: ``order.created`` / ``order.updated``; ``X-WC-Webhook-Signature``.

Each returns an :class:`AdapterResult` (events, or the reason nothing is ingested, or a Segment
identify) or raises :class:`AdapterError` (422, the message names the field path). Signature
checks raise a :class:`SignatureError` subclass (400); a bad Segment write key raises
:class:`CredentialsError` (401). Event ids carry a source prefix (``seg:``, ``stripe:``,
``shopify:``, ``woo:``) so ids from different sources never collide.
"""

from .common import (
    AdapterError,
    AdapterResult,
    CredentialsError,
    MalformedSignatureError,
    MissingSignatureError,
    SignatureError,
    SignatureMismatchError,
    TimestampToleranceError,
)
from .segment import BatchItem, from_segment, from_segment_batch, parse_basic_auth, request_write_key
from .shopify import from_shopify, verify_shopify_hmac
from .stripe import from_stripe, verify_stripe_signature
from .woocommerce import from_woocommerce, is_woocommerce_ping, verify_woocommerce_signature

__all__ = [
    "AdapterError",
    "AdapterResult",
    "BatchItem",
    "CredentialsError",
    "MalformedSignatureError",
    "MissingSignatureError",
    "SignatureError",
    "SignatureMismatchError",
    "TimestampToleranceError",
    "from_segment",
    "from_segment_batch",
    "from_shopify",
    "from_stripe",
    "from_woocommerce",
    "is_woocommerce_ping",
    "parse_basic_auth",
    "request_write_key",
    "verify_shopify_hmac",
    "verify_stripe_signature",
    "verify_woocommerce_signature",
]
