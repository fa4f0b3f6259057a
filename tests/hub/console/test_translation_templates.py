"""The console's translation templates (``hub/console/locale/<domain>.pot``, one per
domain: the common strings and each page group's) are what the source gives, and each
holds the same strings as its catalogue (``zh_Hans/LC_MESSAGES/<domain>.po``), so that
``tools/console_translations.py`` (docs/console.md, "Languages") finds nothing to do."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from babel.messages import pofile

ROOT = Path(__file__).resolve().parents[3]
LOCALE = ROOT / "hub" / "console" / "locale"


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "console_translations", ROOT / "tools" / "console_translations.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


tool = _tool()


def _msgids(path: Path) -> set[str]:
    with path.open("rb") as file:
        return tool.msgids(pofile.read_po(file))  # type: ignore[no-any-return]


def test_the_domains_are_the_catalogues_the_console_reads() -> None:
    folder = LOCALE / "zh_Hans" / "LC_MESSAGES"
    assert {path.stem for path in folder.glob("*.po")} == set(tool.DOMAINS)
    assert {path.stem for path in LOCALE.glob("*.pot")} == set(tool.DOMAINS)


@pytest.mark.parametrize("domain", ["messages", "admin", "auditor", "citizen", "steward"])
def test_each_template_holds_the_strings_of_its_catalogue(domain: str) -> None:
    template = _msgids(LOCALE / f"{domain}.pot")
    catalogue = _msgids(LOCALE / "zh_Hans" / "LC_MESSAGES" / f"{domain}.po")
    assert template - catalogue == set(), "run python tools/console_translations.py"
    assert catalogue - template == set(), "run python tools/console_translations.py"


def test_the_templates_are_what_the_source_gives_and_each_string_is_in_one() -> None:
    fresh = tool.templates()
    for domain, template in fresh.items():
        assert tool.msgids(template) == _msgids(LOCALE / f"{domain}.pot"), domain
    every = [message for template in fresh.values() for message in tool.msgids(template)]
    assert len(every) == len(set(every))
    assert len(every) > 600  # every string of the console, not only the common ones


@pytest.mark.parametrize(
    ("path", "domain"),
    [
        ("hub/console/templates/admin/person.html", "admin"),
        ("hub/console/admin_views.py", "admin"),
        ("hub/console/log_search.py", "auditor"),
        ("hub/console/templates/auditor/entry.html", "auditor"),
        ("hub/console/oidc_sign_in.py", "citizen"),
        ("hub/console/templates/signed_in.html", "citizen"),
        ("hub/console/steward_views.py", "steward"),
        ("hub/console/templates/steward/grant.html", "steward"),
        ("hub/console/templates/layout.html", "messages"),
        ("hub/console/views.py", "messages"),
        ("hub/console/templates/administrator.html", "messages"),  # not templates/admin/
    ],
)
def test_a_files_strings_go_to_its_page_groups_domain(path: str, domain: str) -> None:
    assert tool.group_of(path) == domain
