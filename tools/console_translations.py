"""Refresh the console's translation templates and catalogues after its strings change.

    python tools/console_translations.py            # templates, then zh_Hans's .po files
    python tools/console_translations.py --check    # exit 1 if a template is not current

The console's strings are in one domain per group of pages (docs/console.md,
"Languages"): ``admin``, ``auditor``, ``citizen``, ``steward`` and ``messages`` (the
pages' common strings), each with its template ``hub/console/locale/<domain>.pot`` and
its catalogue ``hub/console/locale/zh_Hans/LC_MESSAGES/<domain>.po``. This runs

1. ``pybabel extract -F hub/console/locale/babel.cfg -k N_ --sort-by-file
   --add-location=file --project=onceonly --copyright-holder=Onceonly`` over
   ``hub/console`` (every string, with the files it is in);
2. splits what it found by :data:`GROUPS`: a string that only a group's files use is
   that group's; a string of the common files, or of two groups, is ``messages``'s
   (so each string is in exactly one template), and writes the five templates;
3. updates each domain's catalogue from its template, as ``pybabel update -D <domain>
   -i hub/console/locale/<domain>.pot -d hub/console/locale -l zh_Hans
   --ignore-obsolete`` does, except that a string that moved to another domain keeps
   the translation it had there.

Then translate the new entries (empty, or "fuzzy" when Babel guessed one: check it and
remove the flag). ``tests/hub/console/test_translation_templates.py`` checks that each
template is what the source gives and holds the same strings as its catalogue.
"""

import argparse
import contextlib
import io
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from babel.messages import pofile
from babel.messages.catalog import Catalog, Message
from babel.messages.frontend import CommandLineInterface

ROOT = Path(__file__).resolve().parent.parent
CONSOLE = ROOT / "hub" / "console"
LOCALE = CONSOLE / "locale"
LANGUAGES = ("zh_Hans",)
COMMON = "messages"
# A page group's files (relative to hub/console, "folder/**": all under it); every
# other file is common.
GROUPS = {
    "admin": ("admin.py", "admin_views.py", "templates/admin/**"),
    "auditor": (
        "auditor.py",
        "log_search.py",
        "charts.py",
        "dashboard.py",
        "templates/auditor/**",
    ),
    "citizen": (
        "citizen.py",
        "oidc_sign_in.py",
        "templates/signed_in.html",
        "templates/citizen/**",
    ),
    "steward": ("steward.py", "steward_views.py", "templates/steward/**"),
}
DOMAINS = (COMMON, *GROUPS)


def group_of(path: str) -> str:
    """The domain of a file's strings (``path`` as Babel gives it, from the checkout)."""
    inside = PurePosixPath(path).relative_to("hub/console").as_posix()
    for group, patterns in GROUPS.items():
        for pattern in patterns:
            folder = pattern.removesuffix("**")
            if inside == pattern or (folder != pattern and inside.startswith(folder)):
                return group
    return COMMON


def _extracted() -> Catalog:
    with tempfile.TemporaryDirectory() as folder, contextlib.chdir(ROOT):
        output = Path(folder) / "all.pot"
        CommandLineInterface().run(  # type: ignore[no-untyped-call]
            [
                "pybabel",
                "--quiet",
                "extract",
                "-F",
                str(LOCALE / "babel.cfg"),
                "-k",
                "N_",
                "--sort-by-file",
                "--add-location=file",
                "--project=onceonly",
                "--copyright-holder=Onceonly",
                "-o",
                str(output),
                "hub/console",
            ]
        )
        with output.open("rb") as pot:
            return pofile.read_po(pot)


def templates() -> dict[str, Catalog]:
    """Each domain's template, as the source gives it now."""
    every = _extracted()
    split = {}
    for domain in DOMAINS:
        split[domain] = Catalog(
            project=every.project,
            copyright_holder=every.copyright_holder,
            creation_date=every.creation_date,
            fuzzy=True,
            header_comment=every.header_comment,
        )
    for message in every:
        if not message.id:
            continue
        groups = {group_of(path) for path, _ in message.locations}
        domain = groups.pop() if len(groups) == 1 else COMMON
        split[domain][message.id] = message
    return split


def template_text(catalog: Catalog) -> bytes:
    written = io.BytesIO()
    pofile.write_po(written, catalog, sort_by_file=True, include_lineno=False)
    return written.getvalue()


def msgids(messages: Iterable[Message]) -> set[str]:
    """The messages' ids (a plural's by its singular), the header left out."""
    ids = set()
    for message in messages:
        if message.id:
            ids.add(message.id if isinstance(message.id, str) else message.id[0])
    return ids


def _translated(language: str) -> dict[str, Message]:
    """Every checked translation of ``language``'s catalogues, by id."""
    found = {}
    for po in sorted((LOCALE / language / "LC_MESSAGES").glob("*.po")):
        with po.open("rb") as file:
            for message in pofile.read_po(file, locale=language):
                strings = message.string if isinstance(message.string, tuple) else [message.string]
                if message.id and not message.fuzzy and all(strings):
                    found[message.id if isinstance(message.id, str) else message.id[0]] = message
    return found


def update(language: str, domain: str, template: Catalog, known: dict[str, Message]) -> None:
    """``domain``'s catalogue of ``language`` updated from ``template``; ``known``: the
    language's translations read before any catalogue was rewritten."""
    path = LOCALE / language / "LC_MESSAGES" / f"{domain}.po"
    with path.open("rb") as file:
        catalog = pofile.read_po(file, locale=language, domain=domain)
    catalog.update(template)
    for message in catalog:
        key = message.id if isinstance(message.id, str) else message.id[0]
        if message.id and (message.fuzzy or not message.string) and key in known:
            message.string = known[key].string  # it moved here from another domain
            message.flags.discard("fuzzy")
    catalog.obsolete.clear()
    with path.open("wb") as file:
        pofile.write_po(file, catalog, ignore_obsolete=True, include_previous=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether it is current")
    arguments = parser.parse_args(argv)
    fresh = templates()
    stale = [
        domain
        for domain, template in fresh.items()
        if not (LOCALE / f"{domain}.pot").exists()
        or msgids(template) != msgids(pofile.read_po((LOCALE / f"{domain}.pot").open("rb")))
    ]
    if arguments.check:
        for domain in stale:
            print(f"{domain}.pot is not current: run python tools/console_translations.py")
        return 1 if stale else 0
    # Every catalogue's translations are read before any is rewritten (a moved string).
    for language in LANGUAGES:
        known = _translated(language)
        for domain, template in fresh.items():
            (LOCALE / f"{domain}.pot").write_bytes(template_text(template))
            update(language, domain, template, known)
        lost = known.keys() - msgids(_translated(language).values())
        for message in sorted(lost & set().union(*(msgids(t) for t in fresh.values()))):
            print(f"{language}: lost the translation of {message!r}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
