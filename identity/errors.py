"""Identity errors, mapped to HTTP statuses in ``api/errors.py``.

IdentityError
├── CredentialRefused   (the request cannot be honoured as asked: 409/422)
├── InvalidCsr          (the certificate signing request is unusable: 422)
├── CaUnavailable       (no device CA is configured: 503)
└── BrokerSyncFailed    (the broker's files could not be written or it not signalled: 503;
                         retriable, the credentials are stored and the next sync applies them)
"""


class IdentityError(Exception):
    """Base of every identity error."""

    retriable = False


class CredentialRefused(IdentityError):
    """A credential cannot be issued as asked (e.g. the device id is a broker service user,
    or cannot be a password file username)."""


class InvalidCsr(IdentityError):
    """A certificate signing request that cannot be parsed, is not self-signed correctly or
    carries a key too weak to sign."""


class CaUnavailable(IdentityError):
    """No device CA (certificate and key) is configured or readable."""


class BrokerSyncFailed(IdentityError):
    """The broker's password/ACL files could not be written, or the broker not reloaded."""

    retriable = True
