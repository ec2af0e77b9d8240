"""The errors of ``pki``: one class per kind of failure, each naming the rule that was broken.

Everything in ``pki`` raises a subclass of :class:`PkiError`. Callers (the ``isthmus pki``
commands, the CA service, the proxy's TLS layer) catch the class they can answer for: the CA
service maps :class:`CsrError` to 400, the proxy maps :class:`VerificationError` to a refused
handshake. ``rule`` is a short stable name of the rule (for logs, metrics and tests); the message
says it in words.
"""

from __future__ import annotations


class PkiError(Exception):
    """Base of every error raised by ``pki``."""

    rule: str

    def __init__(self, message: str, *, rule: str = "pki") -> None:
        super().__init__(message)
        self.rule = rule


class SpiffeIdError(PkiError, ValueError):
    """A SPIFFE ID or trust domain name is malformed (identity.md, "SPIFFE ID")."""


class KeyFileError(PkiError):
    """A private key cannot be read: not PEM, wrong or missing passphrase, unsupported type."""


class PemError(PkiError, ValueError):
    """Text that should hold PEM certificates (or a CSR) does not."""


class CsrError(PkiError, ValueError):
    """A certificate signing request is refused: bad signature or a bad requested identity."""


class IssuanceError(PkiError, ValueError):
    """The CA refuses to issue: lifetime out of bounds, foreign trust domain, unusable CA."""


class LayoutError(PkiError):
    """A directory does not hold the files a command needs (root directory, ``cacerts``)."""


class BundleError(PkiError, ValueError):
    """A trust bundle is malformed or holds a certificate that cannot be a trust anchor."""


class RotationError(PkiError):
    """A root-rotation step was asked for out of order."""


class VerificationError(PkiError):
    """An X.509-SVID (or its chain) is refused. Subclasses say which part failed."""


class ChainError(VerificationError):
    """No valid RFC 5280 path from the leaf to a root of the trust bundle."""


class ValidityError(ChainError):
    """A certificate of the chain is expired or not yet valid."""


class SvidRuleError(VerificationError):
    """The leaf breaks an X.509-SVID rule (URI SAN, basicConstraints, keyUsage, EKU)."""


class SigningCertRuleError(VerificationError):
    """A CA certificate of the chain breaks the SVID rules for signing certificates."""


class TrustDomainError(VerificationError):
    """The leaf's SPIFFE ID is valid but belongs to another trust domain than expected."""
