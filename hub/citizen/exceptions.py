from onceonly.hub.kit.problems import HubError


class NotCitizenPortal(HubError):
    """Only clients configured as citizen portals may ask for a citizen's access log."""

    status = 403
    slug = "not-citizen-portal"
    title = "Not a citizen portal"
