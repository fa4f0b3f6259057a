"""What stops a console request before its page: answered with a page or a redirect
(onceonly.hub.console.endpoints installs the handlers), never with problem JSON."""


class SignInNeeded(Exception):
    """The page needs a signed-in person; the visitor goes to the sign-in page, and
    back to ``next_path`` afterwards."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class FormRefused(Exception):
    """A POST that is not a form of ours: 400 when it does not parse, 403 when its
    CSRF token does not hold for the visitor (missing, forged, or of another session)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status
