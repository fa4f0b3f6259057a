"""What the hub needs before it serves, checked before it does: one line per problem.

``onceonly config check`` reports every problem it finds and changes nothing;
``onceonly serve`` runs the same checks before it listens, and ``serve``, ``migrate``
and ``keys init`` stop on a problem with :class:`StartupFailure`, which the command
line writes as one line on standard error (a JSON record when logs are JSON), never
a traceback. What is checked:

- the settings (environment, then ``$ONCEONLY_CONFIG``), as ``serve`` reads them;
- the keys under ``<data_dir>/keys``: present (in production: development creates
  them), readable, not open to group or others, loadable;
- the database: reachable, its schema the newest this code knows (unless the hub
  migrates at start-up, as it does in development).
"""

import os
import stat
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from onceonly.hub.cli.common import StartupFailure
from onceonly.hub.config import AUDIT_ORIGIN_FILE, CONFIG_ENV, Settings
from onceonly.hub.kit import logs
from onceonly.hub.kit.keyfiles import MissingKeyError

ENV_PREFIX = "ONCEONLY_"
LOGGER = "onceonly.hub.cli"
CONNECT_TIMEOUT = 5  # seconds to wait for the database to answer a check
# Every key file the hub loads at start-up, under keys_dir (onceonly.hub.keys,
# onceonly.hub.audit.checkpoints); the signing keys themselves are named in signing/state.json.
_NOT_KEYS = {"audit-origin"}  # under keys_dir, public: any mode will do


@dataclass(frozen=True)
class Checked:
    """What :func:`check` found: ``problems`` (empty when all is well) and ``notes``,
    one line each, on what is fine or will be done at start-up."""

    problems: list[str]
    notes: list[str]


def load_settings() -> Settings:
    """The settings as ``onceonly serve`` reads them; StartupFailure names each problem."""
    try:
        return Settings()
    except ValidationError as error:
        raise StartupFailure([_setting_problem(detail) for detail in error.errors()]) from None
    except (ValueError, OSError) as error:  # unparsable values, the TOML file itself
        raise StartupFailure([f"settings: {logs.one_line(error)}"]) from None


def _setting_problem(detail: ErrorDetails) -> str:
    """One line for one invalid setting; never its value, which may be a secret."""
    message = detail["msg"].removeprefix("Value error, ")
    if not detail["loc"]:  # a rule about several settings (production mode)
        return f"settings: {message}"
    name, *where = (str(part) for part in detail["loc"])
    position = f" (value {int(where[0]) + 1})" if where and where[0].isdigit() else ""
    if detail["type"] == "extra_forbidden":
        return f"{name} in {os.environ.get(CONFIG_ENV)}: not a setting"
    return f"{_source(name)}{position}: {message}"


def _source(name: str) -> str:
    variable = ENV_PREFIX + name.upper()
    if variable in {key.upper() for key in os.environ}:
        return variable
    return f"{name} in {os.environ.get(CONFIG_ENV) or 'the settings'}"


# ONCEONLY_* variables that are not settings: the command line's own.
CLI_VARIABLES = frozenset(
    f"{ENV_PREFIX}{name}"
    for name in (
        "CONFIG",
        "HUB_URL",
        "TOKEN",
        "ADMIN_TOKEN",
        "SESSION_FILE",
        "CA_FILE",
        "CLIENT_CERT",
        "CLIENT_KEY",
    )
)


def unknown_variables() -> list[str]:
    """``ONCEONLY_*`` variables of the environment that the hub ignores: neither a
    setting nor the command line's (a misspelt name, most likely)."""
    settings = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    return sorted(
        name
        for name in (key.upper() for key in os.environ)
        if name.startswith(ENV_PREFIX) and name not in settings | CLI_VARIABLES
    )


def logs_as_json() -> bool:
    """Whether logs are JSON, even when the settings do not load (a failure to load them
    is reported in the format the operator asked for): ``ONCEONLY_LOG_JSON``, else
    ``log_json`` in the TOML file, else the default."""
    default = bool(Settings.model_fields["log_json"].default)
    raw: object = os.environ.get(f"{ENV_PREFIX}LOG_JSON")
    if raw is None and os.environ.get(CONFIG_ENV):
        try:
            raw = tomllib.loads(Path(os.environ[CONFIG_ENV]).read_text()).get("log_json")
        except (OSError, ValueError):
            raw = None
    try:
        return default if raw is None else TypeAdapter(bool).validate_python(raw)
    except ValidationError:
        return default


def report(failure: StartupFailure) -> int:
    """Write ``failure`` as one line on standard error; the exit status (1)."""
    logs.fatal(str(failure), as_json=logs_as_json(), logger=LOGGER)
    return 1


# --- the checks ---------------------------------------------------------------------


def check(settings: Settings) -> Checked:
    """Everything ``serve`` needs, checked without changing anything."""
    folder = _check_data_dir(settings)
    if folder.problems:  # nothing under it can be checked
        return folder
    parts = [
        _check_purposes(settings),
        _check_keys(settings),
        _check_outgoing_tls(settings),
        _check_database(settings),
        _check_read_replica(settings),
    ]
    return Checked(
        problems=[problem for part in parts for problem in part.problems],
        notes=[note for part in parts for note in part.notes],
    )


def risky_settings(settings: Settings) -> list[str]:
    """What production accepts but its operator must know is on, one line each:
    ``config check`` prints them as warnings, ``serve`` logs them before it listens."""
    if not settings.is_production:
        return []
    risky = []
    if settings.break_glass_token:
        risky.append(
            "break_glass_token is on: whoever reads keys/admin-token (or ONCEONLY_TOKEN"
            " set from it) is an administrator; turn it off"
            " (ONCEONLY_BREAK_GLASS_TOKEN=false) once people administer the hub"
        )
    if settings.adapters_on_loopback:
        risky.append(
            "adapters_on_loopback is on: adapter URLs on this machine's loopback are"
            " registered and queried; only for adapters on the hub's own host"
        )
    return risky


def warn_of_risky_settings(settings: Settings) -> None:
    """Log each of :func:`risky_settings` as a warning, in the hub's log format."""
    import logging

    risky = risky_settings(settings)
    if risky:
        logs.configure(level=settings.log_level, as_json=settings.log_json)
    for line in risky:
        logging.getLogger(LOGGER).warning("%s", line)


DATA_KEYS = {
    "pseudonym.key": "audit_entries",  # every entry's subject pseudonym was made with it
    "checkpoint.jwk": "audit_checkpoints",  # auditors pinned the key of those signatures
    # one-time-code secrets sealed under a derivation root (people.credentials, "v2.")
    "derivation.key": "people WHERE totp_secret LIKE 'v2.%'",
}
"""Keys that stored data depends on, with the rows that would no longer match a new key.
(An upgrade from before decision 0017 makes ``derivation.key`` beside secrets sealed the
older way, which it re-seals: only secrets sealed under a root count.)"""


def refuse_new_keys_for_old_data(settings: Settings) -> None:
    """StartupFailure when a key the data depends on is missing but the database already
    holds that data: a new key would split every subject's history or fork the signed
    log. Such a key comes back from a backup."""
    problem = _old_data_without_keys(settings)
    if problem:
        raise StartupFailure([problem])


def _old_data_without_keys(settings: Settings) -> str | None:
    """What :func:`refuse_new_keys_for_old_data` refuses, as one line, or None."""
    missing = [
        name
        for name, rows in DATA_KEYS.items()
        if not (settings.keys_dir / name).exists()
        and _has_rows(settings.resolved_database_url, rows)
    ]
    if not missing:
        return None
    keys, verb, it = (
        (missing[0], "is", "it") if len(missing) == 1 else (" and ".join(missing), "are", "they")
    )
    made = "it" if len(missing) == 1 else "them"
    return (
        f"no keys created: {keys} {verb} missing from {settings.keys_dir}"
        f" but the database holds what {it} made: restore {made} from the backup"
        " (onceonly restore); new keys would not match the data"
    )


def _has_rows(url: str, rows: str) -> bool:
    """Whether the database answers and holds one of ``rows`` (a table, and a condition)
    (False when it does not answer or has no such table yet: no data to protect)."""
    return _first_value(url, f"SELECT 1 FROM {rows} LIMIT 1") is not None


def _first_value(url: str, query: str) -> object | None:
    """The first column of ``query``'s first row, or None when the database does not
    answer, has no such table yet, or no such row."""
    import sqlalchemy as sa

    from onceonly.hub.db import probe_engine

    if url.startswith("sqlite") and not _sqlite_file(url).exists():
        return None
    try:
        engine = probe_engine(url, connect_timeout=CONNECT_TIMEOUT)
    except (sa.exc.ArgumentError, ValueError, ImportError):
        return None
    try:
        with engine.connect() as connection:
            row = connection.execute(sa.text(query)).first()
        return None if row is None else row[0]
    except sa.exc.SQLAlchemyError:
        return None
    finally:
        engine.dispose()


def _logged_origin(url: str) -> str | None:
    """The name the audit log's latest checkpoint gives it (its note's first line), or
    None before the first checkpoint."""
    note = _first_value(url, "SELECT note FROM audit_checkpoints ORDER BY tree_size DESC LIMIT 1")
    return note.split("\n", 1)[0] if isinstance(note, str) else None


def _check_data_dir(settings: Settings) -> Checked:
    """``data_dir`` is a folder, or nothing yet (development makes it)."""
    for folder in (settings.data_dir, settings.keys_dir):
        if folder.exists() and not folder.is_dir():
            return Checked([f"data_dir: {folder} is not a directory"], [])
    return Checked([], [])


def _check_purposes(settings: Settings) -> Checked:
    """The purpose list loads (without it every record query and request is refused)."""
    from onceonly.hub.access.exceptions import PurposesUnavailable
    from onceonly.hub.access.purposes import purposes_for

    try:
        purposes_for(settings)
    except PurposesUnavailable as error:
        return Checked([" ".join(error.detail.split())], [])
    return Checked([], [])


def _check_outgoing_tls(settings: Settings) -> Checked:
    """The CA file and client certificate the hub uses towards adapters load."""
    if settings.adapter_ca_file is None and settings.adapter_client_cert_file is None:
        return Checked([], [])
    from onceonly.hub.runtime import outgoing_tls

    try:
        outgoing_tls(settings)
    except OSError as error:  # ssl.SSLError is one; so is a missing or unreadable file
        reason = error.strerror or logs.one_line(error)
        return Checked([f"the hub's TLS towards adapters does not load: {reason}"], [])
    mutual = " and a client certificate" if settings.adapter_client_cert_file else ""
    return Checked([], [f"adapters: TLS with the configured CA{mutual}"])


def _check_read_replica(settings: Settings) -> Checked:
    """The read replica (auditors' searches) answers and has the primary's schema."""
    url = settings.read_database_url
    if url is None:
        return Checked([], [])
    name = database_name(url)
    unreachable = database_unreachable(url)
    if unreachable:
        return Checked([f"cannot reach the read replica {name}: {unreachable}"], [])
    newer, current = _schema_of(url)
    if newer:
        return Checked([f"the read replica {name}: {newer}"], [])
    if not current:
        return Checked(
            [
                f"the read replica {name} is not at the newest schema: is it a replica of the"
                " migrated database?"
            ],
            [],
        )
    return Checked([], [f"read replica: {name}, schema at the newest revision"])


def ensure_startable(settings: Settings) -> None:
    """StartupFailure with every problem :func:`check` finds."""
    problems = check(settings).problems
    if problems:
        raise StartupFailure(problems)


def _check_keys(settings: Settings) -> Checked:
    directory = settings.keys_dir
    problems = [
        *_origin_problems(settings),
        *_mode_problems(directory),
        *_owner_problems(directory),
    ]
    from onceonly.hub.keys import key_file_names

    missing = [name for name in key_file_names(directory) if not (directory / name).is_file()]
    if missing and not settings.is_production:
        old_data = _old_data_without_keys(settings)  # what keys init refuses too
        if old_data:
            return Checked([*problems, old_data], [])
        note = f"keys: {len(missing)} of the key files are created at the first start"
        return Checked(problems, [note])
    if missing:
        names = ", ".join(missing)
        problems.append(f"key files missing in {directory}: {names}: run `onceonly keys init`")
    if not problems:
        problems += _load_problems(settings)
    return Checked(problems, [] if problems else [f"keys: loaded from {directory}"])


def _origin_problems(settings: Settings) -> list[str]:
    try:
        origin = settings.resolved_audit_origin
    except (RuntimeError, OSError) as error:
        return [logs.one_line(error)]
    if settings.kept_audit_origin is not None:
        return []
    # keys/audit-origin missing (deleted, or a backup from before it was kept): the log's
    # name is then what its checkpoints say, and a setting or issuer that differs would
    # rename it silently (helper-185, decision 0089)
    logged = _logged_origin(settings.resolved_database_url)
    if logged is None or logged == origin:
        return []
    return [
        f"the audit log is named {logged} (its latest checkpoint) but this hub would name"
        f" it {origin}, and {settings.keys_dir / AUDIT_ORIGIN_FILE} is missing: set"
        f" audit_origin (ONCEONLY_AUDIT_ORIGIN) to {logged}, or rename the log with"
        " `onceonly keys init --change-audit-origin` (docs/operations.md)"
    ]


def _mode_problems(directory: Path) -> list[str]:
    """Every file under ``directory`` that group or others may use, or that this user
    cannot read."""
    problems = []
    for path in sorted(_files(directory)):
        try:
            mode = path.stat().st_mode
            with path.open("rb"):
                pass
        except OSError as error:
            problems.append(f"key file {path} cannot be read: {error.strerror}")
            continue
        if _too_open(mode) and _is_secret(path, directory):
            problems.append(
                f"key file {path} is open to others (mode {stat.S_IMODE(mode):04o}): chmod 600"
            )
    return problems


def _is_secret(path: Path, directory: Path) -> bool:
    """Whether a key file under ``directory`` is secret: not ``audit-origin``, nor a
    retired checkpoint key's verifier key (``checkpoint-retired/*.vkey``, decision
    0091), which are public."""
    return path.name not in _NOT_KEYS and not (_retired(path, directory) and path.suffix == ".vkey")


def _retired(path: Path, directory: Path) -> bool:
    """Whether ``path`` is in ``<directory>/checkpoint-retired/``."""
    from onceonly.hub.audit.checkpoints import RETIRED_FOLDER

    return path.relative_to(directory).parts[0] == RETIRED_FOLDER


def _owner_problems(directory: Path) -> list[str]:
    """Run as root, who reads any file: every file and folder under ``directory`` that
    its owner, the hub's user, cannot read (a key written as root by a version before
    decision 0076, or copied in by root), which would stop every replica."""
    if os.geteuid() != 0 or not directory.is_dir():
        return []
    owner = directory.stat()
    if owner.st_uid == 0:
        return []  # the hub runs as root
    user = _user_name(owner.st_uid)
    groups = _groups_of(owner.st_uid, owner.st_gid)
    problems = []
    for path in sorted([directory, *_folders(directory), *_files(directory)]):
        info = path.stat()
        if not _usable(info, uid=owner.st_uid, groups=groups):
            what = "folder" if path.is_dir() else "key file"
            problems.append(
                f"{what} {path} is {_user_name(info.st_uid)}:{_group_name(info.st_gid)}"
                f" (mode {stat.S_IMODE(info.st_mode):04o}): the hub's user {user}, owner of"
                f" {directory}, cannot read it: chown {user}:{_group_name(owner.st_gid)} {path}"
            )
    return problems


def _usable(info: os.stat_result, *, uid: int, groups: set[int]) -> bool:
    """Whether ``uid`` (in ``groups``) may read the file, or enter the folder, ``info``."""
    need = 0o111 if stat.S_ISDIR(info.st_mode) else 0o444
    if info.st_uid == uid:
        mask = 0o700
    elif info.st_gid in groups:
        mask = 0o070
    else:
        mask = 0o007
    return bool(info.st_mode & need & mask)


def _groups_of(uid: int, gid: int) -> set[int]:
    import pwd

    try:
        return {gid, *os.getgrouplist(pwd.getpwuid(uid).pw_name, gid)}
    except KeyError:  # a uid with no name (a container's): its folder's group only
        return {gid}


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid: int) -> str:
    import grp

    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _too_open(mode: int) -> bool:
    """Others may use it, or its group may change it. A read-only file its group may
    read (0440) is accepted: a Kubernetes Secret mounted for the pod's fsGroup."""
    if mode & 0o037:
        return True
    return bool(mode & 0o040) and bool(mode & 0o222)


def _files(directory: Path) -> Iterable[Path]:
    """The key files under ``directory``; hidden names (locks, temporary files, and the
    ``..data`` and ``..<time>`` folders a Kubernetes Secret mount keeps) left out, and
    in ``checkpoint-retired/`` whatever is not a key (a README an operator put there)."""
    return (
        path
        for path in _visible(directory)
        if path.is_file() and (not _retired(path, directory) or path.suffix in (".vkey", ".jwk"))
    )


def _folders(directory: Path) -> Iterable[Path]:
    """The folders under ``directory`` that hold key files (hidden ones left out)."""
    return (path for path in _visible(directory) if path.is_dir())


def _visible(directory: Path) -> Iterable[Path]:
    if not directory.is_dir():
        return []
    return (
        path
        for path in directory.rglob("*")
        if not any(part.startswith(".") for part in path.relative_to(directory).parts)
    )


def _load_problems(settings: Settings) -> list[str]:
    """Load the keys as the hub does at start-up, creating nothing."""
    from onceonly.hub.audit.checkpoints import load_signer
    from onceonly.hub.keys import HubKeys

    try:
        HubKeys.load(settings.keys_dir, create=False)
        load_signer(keys_dir=settings.keys_dir, origin=settings.resolved_audit_origin, create=False)
    except MissingKeyError as error:
        return [logs.one_line(error)]
    except Exception as error:  # a damaged file: any parser's error
        return [f"the keys in {settings.keys_dir} do not load: {logs.one_line(error)}"]
    return []


def database_name(url: str) -> str:
    """The database URL without its password, for messages."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
        # no password, and no query value that may be one (?password=, ?sslkey=)
        query = {name: value for name, value in parsed.query.items() if not _secret(name)}
        shown = parsed.set(password=None, query=query).render_as_string(hide_password=True)
        return without_secrets(shown, url)
    except (ArgumentError, ValueError):
        return "the configured database (database_url does not parse)"


def without_secrets(message: str, url: str) -> str:
    """``message`` with ``url``'s password blanked, also the parts of one holding an
    unescaped ``@`` (a driver's error may quote the host it parsed out of it), and
    query values that carry a secret (``?password=``, ``sslpassword``, ``sslkey``...).
    Any URL will do, one with no user, no password, no port or no host, or one that
    does not parse at all."""
    secrets = _written_password(url)
    secrets.update(_parsed_secrets(url))
    for secret in sorted((s for s in secrets if len(s) >= 3), key=len, reverse=True):
        message = message.replace(secret, "***")
    return message


def _parsed_secrets(url: str) -> set[str]:
    """The password and secret query values as SQLAlchemy reads them (decoded), and as
    written (percent-encoded); nothing when the URL does not parse."""
    from urllib.parse import quote

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return set()
    values = [parsed.password] if parsed.password else []
    for name, value in parsed.query.items():
        if _secret(name):
            values += [value] if isinstance(value, str) else list(value)
    return {form for value in values for form in (str(value), quote(str(value), safe=""))}


def _secret(name: str) -> bool:
    """Whether a URL's query parameter ``name`` may hold a secret."""
    return any(word in name.lower() for word in ("pass", "secret", "key", "token"))


def _written_password(url: str) -> set[str]:
    """The password as the operator meant it when it holds an unescaped ``@`` (up to the
    last ``@`` of the authority, which a parser cuts at the first), and its pieces."""
    authority = url.partition("://")[2].split("/", 1)[0].split("?", 1)[0]
    userinfo, at, _ = authority.rpartition("@")
    password = userinfo.partition(":")[2] if at else ""
    return {password, *password.split("@")} if password else set()


def _check_database(settings: Settings) -> Checked:
    url = settings.resolved_database_url
    name = database_name(url)
    if url.startswith("sqlite") and not _sqlite_file(url).exists():
        if settings.should_migrate:
            return Checked([], [f"database: {name} is created at the first start"])
        return Checked([f"the database {name} does not exist: run `onceonly migrate`"], [])
    unreachable = database_unreachable(url)
    if unreachable:
        return Checked([f"cannot reach the database {name}: {unreachable}"], [])
    read_only = _read_only(url)
    if read_only:
        return Checked([f"the database {name} {read_only}"], [])
    newer, current = _schema_of(url)
    if newer:
        return Checked([f"{name}: {newer}"], [])
    if current:
        return Checked([], [f"database: {name}, schema at the newest revision"])
    if settings.should_migrate:
        return Checked([], [f"database: {name}, migrated to the newest schema at start-up"])
    return Checked([f"the database schema of {name} is not the newest: run `onceonly migrate`"], [])


def missing_database(url: str) -> str | None:
    """Why a command that only reads or repairs the database cannot open it without
    making it (a SQLite file that does not exist, or a file where its folder should
    be), or None. Opening a missing SQLite file would make it, and its folder."""
    if not url.startswith("sqlite") or _sqlite_database(url) in ("", ":memory:"):
        return None
    path = _sqlite_file(url)
    if path.is_file():
        return None
    for folder in reversed(path.parents):
        if folder.exists() and not folder.is_dir():
            return f"{folder} is not a directory (data_dir?)"
    if path.exists():
        return f"{path} is not a database file"
    return "no such file: set ONCEONLY_DATA_DIR (or ONCEONLY_DATABASE_URL) to the hub's"


def _sqlite_database(url: str) -> str:
    """The database part of ``url`` (a SQLite file's path), empty when none."""
    from sqlalchemy.engine import make_url

    return make_url(url).database or ""


def _sqlite_file(url: str) -> Path:
    from sqlalchemy.engine import make_url

    return Path(make_url(url).database or "")


def database_unreachable(url: str, *, make_file: bool = False) -> str | None:
    """Why the database does not answer, or None when it does. With ``make_file``
    (``onceonly migrate``), a missing SQLite file and its folder are made first, for
    the hub's user alone (onceonly.hub.db.probe_engine)."""
    import sqlalchemy as sa

    from onceonly.hub.db import driver_message, probe_engine

    try:
        engine = probe_engine(url, connect_timeout=CONNECT_TIMEOUT, make_file=make_file)
    except (sa.exc.ArgumentError, ValueError, ImportError, OSError) as error:
        return without_secrets(logs.one_line(error), url)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as error:
        return without_secrets(driver_message(error), url)
    finally:
        engine.dispose()
    return None


def _schema_of(url: str) -> tuple[str | None, bool]:
    """Why the database's schema is newer than this code's (or None), and whether it
    is the newest this code knows."""
    from onceonly.hub import migrate

    try:
        return None, migrate.is_current(url)
    except migrate.NewerDatabase as error:
        return str(error), False


def _read_only(url: str) -> str | None:
    """Why the hub could write nothing to the database (a PostgreSQL standby, or a
    primary whose transactions are read-only by default), or None when it can. Asked
    as a write is: in a transaction's default mode."""
    import sqlalchemy as sa

    from onceonly.hub.db import probe_engine

    if not url.startswith("postgresql"):
        return None
    engine = probe_engine(url, connect_timeout=CONNECT_TIMEOUT)
    try:
        with engine.connect() as connection:
            recovery = connection.execute(sa.text("SELECT pg_is_in_recovery()")).scalar()
            flag = connection.execute(sa.text("SHOW transaction_read_only")).scalar()
    except sa.exc.SQLAlchemyError:
        return None  # it answered a moment ago; the schema check says what is wrong
    finally:
        engine.dispose()
    if recovery:
        return "is a standby (read-only): point database_url at the primary"
    if flag == "on":
        return (
            "is read-only (default_transaction_read_only is on): every write would fail;"
            " point database_url at the primary, or turn the setting off for the hub's user"
        )
    return None
