"""Who asks, whatever the credential: the one type that both kinds of caller become.

- a **machine client** presents an access token (RFC 9068), DPoP-bound (RFC 9449) or
  certificate-bound (RFC 8705): it acts for its department within the token's scopes;
- a **person** presents a session token (``POST /v1/people/sign-in`` or OpenID
  Connect): they act within their roles (onceonly.hub.people.principal);
- the **break-glass** token is the installation's bootstrap administrator
  (docs/decisions/0014), a person's principal with ``break_glass`` set.

Routes get one from onceonly.hub.auth.dependencies (``Authenticator``), and ask it,
not the request, what the caller may do.
"""

from dataclasses import dataclass
from typing import Literal

from onceonly.hub.auth.callers import Caller
from onceonly.hub.people.principal import Principal as Person

Kind = Literal["client", "person", "break-glass"]


@dataclass(frozen=True)
class AuthPrincipal:
    """A caller recognized by its credential: exactly one of ``client`` and ``person``."""

    client: Caller | None = None
    person: Person | None = None

    def __post_init__(self) -> None:
        if (self.client is None) == (self.person is None):
            raise ValueError("a principal is a client or a person, never both nor neither")

    @property
    def kind(self) -> Kind:
        if self.client is not None:
            return "client"
        assert self.person is not None
        return "break-glass" if self.person.break_glass else "person"

    @property
    def name(self) -> str:
        """The client id, the person's username, or ``break-glass``."""
        if self.client is not None:
            return self.client.client_id
        assert self.person is not None
        return self.person.name
