from onceonly.hub.kit.problems import HubError


class NotSignedIn(HubError):
    """No valid person's session (or break-glass token) came with the request."""

    status = 401
    slug = "not-signed-in"
    title = "Sign-in required"


class SignInFailed(HubError):
    """Wrong username, password or one-time code, or the account is disabled: one answer
    for all of them, so that it tells nothing about which accounts exist."""

    status = 401
    slug = "sign-in-failed"
    title = "Sign-in failed"


class SignInThrottled(HubError):
    status = 429
    slug = "sign-in-throttled"
    title = "Too many failed sign-ins"


class SignInsBusy(SignInThrottled):
    """Too many sign-ins are being checked at once (decision 0063): the same problem
    type, but nothing this person did; they may try again in a second."""


class PersonNotFound(HubError):
    status = 404
    slug = "person-not-found"
    title = "No such person"


class PersonConflict(HubError):
    status = 409
    slug = "person-conflict"
    title = "Conflicting account change"


class OidcSubjectTaken(PersonConflict):
    """The OpenID Connect subject is linked to another account already: one (issuer,
    subject) pair signs in one account. The problem never names that account."""
