"""What the ``onceonly`` command's modules share.

- :func:`add_command` adds a subcommand; :func:`add_hub_command` one with the
  options of every command that talks to a hub (:func:`with_hub`): ``--hub``
  (``$ONCEONLY_HUB_URL``, else the issuer), ``--ca-file`` (``$ONCEONLY_CA_FILE``:
  trust this certificate authority instead of the usual ones), ``--client-cert`` and
  ``--client-key`` (``$ONCEONLY_CLIENT_CERT``, ``$ONCEONLY_CLIENT_KEY``: present this
  certificate);
- :func:`hub_of` is the hub a command talks to, and how;
- :func:`call_hub` runs one call against the hub with the command's credential (or
  none, for the public catalogue) and shows the answer in the form ``--output`` asks
  for (:mod:`onceonly.hub.cli.output`); :func:`talking_to` turns what can go wrong into
  :class:`CommandFailed`: exit 1 for a refusal (or a local file that cannot be read),
  exit 2 when the hub cannot be reached. ``main`` prints its one line. A wrong
  argument (a file that cannot be read, a certificate that does not load) ends the
  command as argparse does, with SystemExit and its one line (exit 1).
"""

import argparse
import errno
import importlib.util
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from onceonly.hub.cli.output import Shape, add_output_option, form_of, show

if TYPE_CHECKING:  # imported where used: `onceonly --help` loads no TLS, HTTP or web stack
    import ssl

    from onceonly.hub.cli.admin_client import AdminClient

Command = Callable[[argparse.Namespace], int]
EXIT_REFUSED, EXIT_UNREACHABLE = 1, 2
TIMEOUT = 30.0


class CommandFailed(Exception):
    """A command ends with ``status`` and one line on standard error."""

    def __init__(self, line: str, *, status: int) -> None:
        self.status = status
        super().__init__(line)


class StartupFailure(Exception):
    """The hub cannot start (or a command cannot run) as configured; ``problems`` are
    one line each (:mod:`onceonly.hub.cli.startup` finds them; here, so that ``main``
    can catch it without loading the settings' and keys' modules for every command)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def segment(value: object) -> str:
    """``value`` as one path segment: every character that could end it or change the
    path (``/``, ``?``, ``#``, ``%``, a ``..``) percent-encoded, so an id typed on the
    command line names that id, never another route."""
    text = quote(str(value), safe="")
    return text.replace(".", "%2E") if text in (".", "..") else text


def add_command(sub: Any, name: str, func: Command, help_text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(func=func)
    return parser


def add_hub_command(
    sub: Any, name: str, func: Command, help_text: str, *, output: bool = True
) -> argparse.ArgumentParser:
    """A subcommand that talks to a hub: :func:`add_command` with :func:`with_hub`, and
    ``--output`` when it prints data (``output``)."""
    parser = with_hub(add_command(sub, name, func, help_text))
    return add_output_option(parser) if output else parser


def with_hub(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of a command that talks to a hub over HTTP."""
    parser.add_argument("--hub", help="hub base URL (default: $ONCEONLY_HUB_URL or the issuer)")
    parser.add_argument(
        "--ca-file",
        metavar="PEM",
        help="trust the hub's certificate only if this CA issued it ($ONCEONLY_CA_FILE)",
    )
    parser.add_argument(
        "--client-cert", metavar="PEM", help="present this certificate ($ONCEONLY_CLIENT_CERT)"
    )
    parser.add_argument(
        "--client-key",
        metavar="PEM",
        help="its private key, if not in the certificate file ($ONCEONLY_CLIENT_KEY)",
    )
    return parser


DISTRIBUTION = "onceonly"


def installed_version() -> str:
    """``onceonly <version>`` of the installed distribution (decision 0023, 8)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{DISTRIBUTION} {version(DISTRIBUTION)}"
    except PackageNotFoundError:  # run from a source tree that is not installed
        return f"{DISTRIBUTION} (not installed)"


class ShowVersion(argparse.Action):
    """``--version``: print :func:`installed_version` and exit 0, as argparse's own
    action does, but read the distribution's metadata only then (it costs a tenth of
    a second of every start otherwise)."""

    def __init__(self, option_strings: list[str], dest: str) -> None:
        super().__init__(
            option_strings,
            dest=argparse.SUPPRESS,
            default=argparse.SUPPRESS,
            nargs=0,
            help="show the installed version and exit",
        )

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(installed_version())
        parser.exit()


ADAPTER_HELP = "run and feed a department adapter"


def command_of(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names: its first word that is not an option (the
    top-level options, ``--help`` and ``--version``, take no value)."""
    return next((word for word in argv if not word.startswith("-")), None)


def add_adapter_commands(sub: Any, *, mounted: bool) -> None:
    """``onceonly adapter …`` (onceonly.adapters.cli); unless ``mounted``, only its name
    and help line, for the top-level ``--help`` and for the other commands."""
    if mounted:
        from onceonly.adapters.cli import add_commands

        add_commands(sub)
    else:
        sub.add_parser("adapter", help=ADAPTER_HELP)


@dataclass(frozen=True)
class Hub:
    """The hub a command talks to: its URL, and the TLS context (None: the defaults)."""

    url: str
    tls: "ssl.SSLContext | None"

    def client(self, token: str) -> "AdminClient":
        from onceonly.hub.cli.admin_client import AdminClient

        return AdminClient(self.url, token, timeout=TIMEOUT, tls=self.tls)


def hub_of(args: argparse.Namespace) -> Hub:
    return Hub(hub_url(args), tls_context(args))


def hub_url(args: argparse.Namespace) -> str:
    """``--hub``, else ``$ONCEONLY_HUB_URL``, else the issuer of the hub's settings."""
    explicit = getattr(args, "hub", None) or os.environ.get("ONCEONLY_HUB_URL")
    if explicit:
        return _http_url(str(explicit))
    from onceonly.hub.cli.startup import load_settings

    return load_settings().issuer


def _http_url(url: str) -> str:
    """``url`` when it is an http(s) URL with a host; else exit 1 (an option that
    cannot be used, not a hub that cannot be reached)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        usable = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018  # raises on a port that is no number (urlsplit does not)
    except ValueError:  # a malformed IPv6 host, a port that is no number
        usable = False
    if not usable:
        raise CommandFailed(
            "--hub (or ONCEONLY_HUB_URL) is not an http:// or https:// URL with a host",
            status=1,
        )
    return url


def _option(args: argparse.Namespace, name: str) -> str | None:
    value = getattr(args, name, None) or os.environ.get(f"ONCEONLY_{name.upper()}")
    return str(value) if value else None


def tls_context(args: argparse.Namespace) -> "ssl.SSLContext | None":
    """The TLS context of ``--ca-file``, ``--client-cert`` and ``--client-key`` (or their
    environment variables); None when none is given."""
    import ssl

    import httpx

    ca_file, cert, key = (_option(args, n) for n in ("ca_file", "client_cert", "client_key"))
    if key and not cert:
        raise SystemExit("--client-key needs --client-cert")
    if not (ca_file or cert):
        return None
    try:
        context = ssl.create_default_context(cafile=ca_file) if ca_file else None
    except (OSError, ssl.SSLError) as error:
        raise SystemExit(f"cannot use the CA file {ca_file}: {_reason(error)}") from None
    context = context or httpx.create_ssl_context()
    if cert:
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as error:
            what = f"{cert} and {key}" if key else cert
            raise SystemExit(
                f"cannot use the client certificate {what}: {_reason(error)}"
            ) from None
    return context


def _reason(error: OSError) -> str:
    import ssl

    if isinstance(error, ssl.SSLError):
        return f"not a PEM certificate or key ({error.reason or error})"
    return error.strerror or str(error)


_LOCAL_WRITE_ERRORS = frozenset({errno.ENOSPC, errno.EIO, errno.EROFS, errno.EDQUOT, errno.EFBIG})


@contextmanager
def talking_to(url: str) -> Iterator[None]:
    """Turn what goes wrong with a call to the hub at ``url`` into CommandFailed."""
    import httpx

    from onceonly.hub.cli.admin_client import AdminError
    from onceonly.hub.kit.untrusted_json import UnsafeJson

    try:
        yield
    except AdminError as error:
        if error.not_a_hub:  # a web page, a proxy's error: the hub was not reached
            line = f"the server at {url} is not an Onceonly hub (it answered {error})"
            raise CommandFailed(line, status=EXIT_UNREACHABLE) from None
        raise CommandFailed(f"refused: {error}", status=EXIT_REFUSED) from None
    except UnsafeJson as error:  # a file the command reads (catalogue import)
        raise CommandFailed(str(error), status=EXIT_REFUSED) from None
    except (httpx.TransportError, httpx.InvalidURL) as error:
        raise unreachable(url, error) from None
    except BrokenPipeError:
        raise  # the output's reader went away (`| head`): main ends quietly
    except OSError as error:
        if error.errno in _LOCAL_WRITE_ERRORS:  # our output, not the hub
            line = f"cannot write the output: {error.strerror}"
            raise CommandFailed(line, status=EXIT_REFUSED) from None
        if error.filename is None:
            raise unreachable(url, error) from None
        line = f"cannot read {error.filename}: {error.strerror}"  # a local file, not the hub
        raise CommandFailed(line, status=EXIT_REFUSED) from None


def unreachable(url: str, error: Exception) -> CommandFailed:
    """Exit 2: the hub at ``url`` cannot be reached, in one line that says why."""
    import httpx

    untrusted = _certificate_error(error)
    if untrusted is not None:
        reason = (
            f"its TLS certificate is not trusted ({untrusted.verify_message}): give the"
            " certificate authority that issued it with --ca-file or ONCEONLY_CA_FILE"
        )
    else:
        reason = " ".join(str(error).split()) or type(error).__name__
    if url.startswith("https:") and isinstance(error, httpx.RemoteProtocolError | httpx.ReadError):
        # TLS 1.3: a server that wants a client certificate hangs up after the handshake
        reason += " (if the hub asks for a client certificate: --client-cert, --client-key)"
    return CommandFailed(f"cannot reach the hub at {url}: {reason}", status=EXIT_UNREACHABLE)


def _certificate_error(error: BaseException | None) -> "ssl.SSLCertVerificationError | None":
    import ssl

    seen = 0
    while error is not None and seen < 10:  # httpx wraps the ssl module's error
        if isinstance(error, ssl.SSLCertVerificationError):
            return error
        error, seen = error.__cause__ or error.__context__, seen + 1
    return None


def call_hub(
    args: argparse.Namespace,
    call: Callable[["AdminClient"], Any],
    *,
    shape: Shape | None = None,
    public: bool = False,
) -> int:
    """Run ``call`` against the hub with the command's credential (none for a
    ``public`` read: decision 0006) and show its answer in the ``--output`` form."""
    from onceonly.hub.cli.session import credential

    hub = hub_of(args)
    form = form_of(args)
    with talking_to(hub.url), hub.client("" if public else credential(hub.url)) as admin:
        result = call(admin)
    show(result, form=form, shape=shape)
    return 0


def read_json_argument(name: str) -> Any:
    """The JSON in the file ``name`` given on the command line; exit 1 in one line when
    it cannot be read or is not JSON (or is nested too deep)."""
    from onceonly.hub.cli.admin_client import read_json_file

    try:
        return read_json_file(Path(name))
    except OSError as error:
        raise SystemExit(f"cannot read {name}: {error.strerror}") from None
    except ValueError as error:  # not JSON, or nested too deep
        raise SystemExit(str(error)) from None


def catalogue_dir() -> Path:
    """The starter catalogue: ``./schemas`` when run in a checkout, else the copy the
    package installs (onceonly.schemas), so that an installed wheel runs the demo and
    ``onceonly catalogue import`` without a directory too."""
    for candidate in (Path.cwd() / "schemas", *_installed_catalogues()):
        if (candidate / "departments.json").is_file():
            return candidate
    raise FileNotFoundError("the starter catalogue (onceonly.schemas) is not installed")


def _installed_catalogues() -> list[Path]:
    """Where onceonly.schemas is installed: a data package without ``__init__.py``, so
    it may have several locations (an editable install adds the checkout's)."""
    spec = importlib.util.find_spec("onceonly.schemas")
    locations = spec.submodule_search_locations if spec is not None else None
    return [Path(location) for location in locations or []]
