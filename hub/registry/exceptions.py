from onceonly.hub.kit.problems import HubError


class UnknownItem(HubError):
    status = 404
    slug = "unknown-item"
    title = "Unknown data item"


class UnknownVersion(HubError):
    status = 404
    slug = "unknown-version"
    title = "Unknown item version"


class UnknownDepartment(HubError):
    status = 404
    slug = "unknown-department"
    title = "Unknown department"


class AdapterUrlNotHttps(HubError):
    """A production hub calls departments' adapters over HTTPS only (deploy/README.md)."""

    status = 400
    slug = "adapter-url-not-https"
    title = "The adapter URL must be an https:// URL"


class InvalidSchema(HubError):
    """The uploaded JSON Schema is refused; ``detail`` names the JSON pointer."""

    status = 422
    slug = "invalid-schema"
    title = "Schema refused"


class InvalidJwks(HubError):
    status = 422
    slug = "invalid-jwks"
    title = "Client keys refused"


class RegistryConflict(HubError):
    status = 409
    slug = "registry-conflict"
    title = "Conflicts with the registry"


class ItemRetired(HubError):
    status = 410
    slug = "item-retired"
    title = "Data item retired"


class IncompatibleVersion(HubError):
    """A new version breaks the item's compatibility mode; ``detail`` says where and why."""

    status = 409
    slug = "incompatible-version"
    title = "Version breaks the item's compatibility mode"


class CompatibilityNotJudged(HubError):
    """The checker cannot judge a change; ``detail`` names the construct and its pointer."""

    status = 422
    slug = "compatibility-not-judged"
    title = "Compatibility cannot be judged"


class NotSteward(HubError):
    """The acting principal does not steward the item's owner department."""

    status = 403
    slug = "not-steward"
    title = "Not a steward of the owner department"


class RegistryChangeNotFound(HubError):
    status = 404
    slug = "registry-change-not-found"
    title = "No such registry change"


class RegistryChangeNotPending(HubError):
    """The change was approved or refused already; ``state`` says which."""

    status = 409
    slug = "registry-change-not-pending"
    title = "Registry change is no longer pending"


class NotSecondPerson(HubError):
    """The person who asked for a dangerous change does not approve it."""

    status = 403
    slug = "not-second-person"
    title = "A second person must decide this change"
