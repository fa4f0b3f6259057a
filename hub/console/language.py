"""The console's languages: which one a visitor gets, and the translations of each.

English is the language of the source strings; Simplified Chinese (``zh-Hans``) is
translated in ``locale/zh_Hans/LC_MESSAGES/*.po``: ``messages.po`` for the console's
frame and catalogue, and one file per group of pages (``steward.po``, ``auditor.po``,
``admin.po``, ``citizen.po``), merged into one catalogue. The ``.po`` files are the
only form kept: they are read once per process with Babel and compiled in memory, so
neither a build step nor a committed ``.mo`` file is needed (docs/console.md).

A visitor's language is the one they chose with the switch (a cookie) if it is one
of ours, else the best of ``Accept-Language`` (RFC 9110 §12.5.4) that we have, else
English.
"""

import gettext
import io
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Final

from babel.messages import mofile, pofile
from babel.messages.catalog import Catalog

DEFAULT: Final = "en"
# Code (as in lang="" and the cookie) -> the language's own name, for the switch.
LANGUAGES: Final = {"en": "English", "zh-Hans": "简体中文"}
_CATALOGUE_FOLDERS: Final = {"zh-Hans": "zh_Hans"}
# Chinese written in traditional characters is not what zh-Hans serves.
_TRADITIONAL: Final = ("zh-hant", "zh-tw", "zh-hk", "zh-mo")


def _language_of(tag: str) -> str | None:
    """Which of ours serves a language tag of ``Accept-Language`` (None: none does)."""
    tag = tag.strip().lower()
    if tag == "*":
        return DEFAULT
    if tag == "en" or tag.startswith("en-"):
        return "en"
    if tag == "zh" or (tag.startswith("zh-") and not tag.startswith(_TRADITIONAL)):
        return "zh-Hans"
    return None


def _weighted(header: str) -> list[tuple[float, int, str]]:
    """The header's tags, best first (by weight, then by order); q=0 means "not this"."""
    ranked = []
    for position, part in enumerate(header.split(",")[:32]):
        tag, *parameters = part.split(";")
        weight = 1.0
        for parameter in parameters:
            name, _, value = parameter.strip().partition("=")
            if name.lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if weight > 0 and tag.strip():
            ranked.append((-weight, position, tag))
    return sorted(ranked)


def negotiate(*, chosen: str | None, accept_language: str | None) -> str:
    """The language of a page: the switch's choice, else ``Accept-Language``'s best."""
    if chosen in LANGUAGES:
        return chosen
    for _, _, tag in _weighted(accept_language or ""):
        language = _language_of(tag)
        if language is not None:
            return language
    return DEFAULT


def catalog_files(folder: str) -> list[Traversable]:
    """The ``.po`` files of a language's folder, in name order."""
    directory = files("onceonly.hub.console") / "locale" / folder / "LC_MESSAGES"
    return sorted(
        (entry for entry in directory.iterdir() if entry.name.endswith(".po")),
        key=lambda entry: entry.name,
    )


def merged_catalog(folder: str) -> Catalog:
    """Every ``.po`` file of ``folder`` as one catalogue (a message in two files: the
    later file's translation)."""
    merged = Catalog(locale=folder)
    for source in catalog_files(folder):
        with source.open("rb") as po:
            for message in pofile.read_po(po, locale=folder):
                if message.id:
                    merged[message.id] = message
    return merged


@cache
def translations(language: str) -> gettext.NullTranslations:
    """The translations of ``language`` (English: the source strings themselves)."""
    folder = _CATALOGUE_FOLDERS.get(language)
    if folder is None:
        return gettext.NullTranslations()
    catalog = merged_catalog(folder)
    compiled = io.BytesIO()
    mofile.write_mo(compiled, catalog)  # fuzzy entries stay untranslated
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)
