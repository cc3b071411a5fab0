"""URLs without credentials: what a run record may say about a remote, a mirror or a CI job.

Records are stored, listed, served by `harness ui` and pushed, so a token in a URL would travel with every one of
them. :func:`without_credentials` removes the userinfo (``user:password@``, ``oauth2:TOKEN@``, ``TOKEN@``, and the
user of ``ssh://git@host``) of any URL with a scheme, and the query parameters that carry secrets (``token``,
``access_token``, ``private_token``, ``password``, ``key``, ``sig``, ``X-Amz-*``, ...). An scp-like git address
(``git@host:path``) keeps its user: it can hold no password, and ``git`` there is an account name, not a secret.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit, urlunsplit

# Query parameter names (lowercase) that carry a credential or a signature.
_SECRET_PARAMS = frozenset(
    {
        "access_token",
        "api_key",
        "apikey",
        "auth",
        "client_secret",
        "id_token",
        "key",
        "pass",
        "passwd",
        "password",
        "private_token",
        "pwd",
        "refresh_token",
        "secret",
        "sig",
        "signature",
        "token",
    }
)
# Signed-URL parameters of the big object stores: X-Amz-Signature, X-Amz-Credential, X-Amz-Security-Token, ...
_SECRET_PREFIXES = ("x-amz-", "x-goog-")


def without_credentials(url: str) -> str | None:
    """``url`` with no userinfo and no secret-bearing query parameters; None when it has a scheme but does not
    parse (an unparseable URL cannot be cleaned, so it is not kept). A local path comes back unchanged."""
    if "://" not in url:
        user, at, rest = url.partition("@")
        # scp-like user@host:path keeps its user; "a:b@..." is not scp syntax and can only be a credential.
        return rest if at and ":" in user and not any(c in user for c in "/\\") else url
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    netloc = parts.netloc.rpartition("@")[2]
    query = "&".join(p for p in parts.query.split("&") if not _secret_param(p)) if parts.query else ""
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _secret_param(pair: str) -> bool:
    name = unquote(pair.partition("=")[0]).strip().lower()
    if name in _SECRET_PARAMS or name.startswith(_SECRET_PREFIXES):
        return True
    return any(word in name for word in ("token", "secret", "password"))
