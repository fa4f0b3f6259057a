from onceonly.hub.kit.problems import HubError


class NotCitizenPortal(HubError):
    """Only clients configured as citizen portals may ask for a citizen's access log."""

    status = 403
    slug = "not-citizen-portal"
    title = "Not a citizen portal"


class CitizenIdentifierMissing(HubError):
    """The citizens' provider signed a person in, but its ID token lacks the claim that
    holds their identifier (``citizen_identifier_claim``)."""

    status = 401
    slug = "citizen-identifier-missing"
    title = "No identifier in the ID token"
