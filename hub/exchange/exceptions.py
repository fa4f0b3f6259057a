from onceonly.hub.kit.problems import HubError


class RecordNotFound(HubError):
    status = 404
    slug = "record-not-found"
    title = "Record not found"


class OwnerUnavailable(HubError):
    status = 503
    slug = "owner-unavailable"
    title = "Owner's adapter unavailable"


class OwnerTimeout(HubError):
    status = 504
    slug = "owner-timeout"
    title = "Owner's adapter did not answer in time"


class OwnerInvalidResponse(HubError):
    status = 502
    slug = "owner-invalid-response"
    title = "Owner's adapter answered invalid data"
