"""Tier 1: the console's pure parts, as tables of calls: language negotiation, CSRF
tokens, form parsing, safe redirects, an item's field table, the translations and the
vendored files."""

import hashlib
from importlib.resources import files
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir

from onceonly.hub.console import admin_views, assets, csrf, forms, language, pages, views

CONSOLE = Path(__file__).resolve().parents[3] / "hub" / "console"


@pytest.mark.parametrize(
    ("chosen", "header", "expected"),
    [
        (None, None, "en"),
        (None, "zh-CN,zh;q=0.9,en;q=0.8", "zh-Hans"),
        (None, "zh-Hans-CN", "zh-Hans"),
        (None, "zh", "zh-Hans"),
        (None, "zh-TW,en;q=0.5", "en"),  # traditional characters: not zh-Hans
        (None, "fr-FR, zh;q=0.4", "zh-Hans"),
        (None, "en;q=0.2, zh-CN;q=0.9", "zh-Hans"),  # by weight, not order
        (None, "zh-CN;q=0, en", "en"),  # q=0: not this one
        (None, "de, fr", "en"),
        (None, "*", "en"),
        (None, "zh-CN;q=x", "en"),  # a broken weight counts as 0
        ("zh-Hans", "en", "zh-Hans"),  # the switch wins
        ("klingon", "zh-CN", "zh-Hans"),  # a cookie that is not ours is ignored
    ],
)
def test_the_language_of_a_page(chosen: str | None, header: str | None, expected: str) -> None:
    assert language.negotiate(chosen=chosen, accept_language=header) == expected


def test_a_csrf_token_holds_only_for_its_own_binding() -> None:
    key, other_key = b"k" * 32, b"o" * 32
    token = csrf.token_for(key, session_hash="abc", pre_session=None)
    assert csrf.token_holds(key, token, session_hash="abc", pre_session=None)
    assert not csrf.token_holds(key, token, session_hash="abd", pre_session=None)
    assert not csrf.token_holds(other_key, token, session_hash="abc", pre_session=None)
    assert not csrf.token_holds(key, token, session_hash=None, pre_session="abc")
    assert not csrf.token_holds(key, None, session_hash="abc", pre_session=None)
    assert csrf.token_for(key, session_hash=None, pre_session=None) == ""
    assert not csrf.token_holds(key, "", session_hash=None, pre_session=None)
    pre = csrf.token_for(key, session_hash=None, pre_session="p")
    assert csrf.token_holds(key, pre, session_hash=None, pre_session="p")


FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        (FORM, b"a=1&b=", {"a": "1", "b": ""}),
        (FORM + "; charset=utf-8", "名=值".encode(), {"名": "值"}),
        (FORM, b"", {}),
        ("application/json", b'{"a": 1}', None),
        (None, b"a=1", None),
        (FORM, b"a=1&a=2", None),  # given twice
        (FORM, b"a=%00", None),
        (FORM, b"a=%ff", None),  # not UTF-8
        (FORM, "&".join(f"f{i}=1" for i in range(40)).encode(), None),
    ],
)
def test_a_form_is_read_or_refused_whole(
    content_type: str | None, body: bytes, expected: dict[str, str] | None
) -> None:
    if expected is None:
        with pytest.raises(forms.MalformedForm):
            forms.fields(content_type, body)
    else:
        assert forms.fields(content_type, body) == expected


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [
        ("/account", "/account"),
        ("/catalogue?q=a", "/catalogue?q=a"),
        ("//evil.example", "/catalogue"),
        ("https://evil.example/", "/catalogue"),
        ("/\\evil.example", "/catalogue"),
        ("/a\nb", "/catalogue"),
        ("", "/catalogue"),
        (None, "/catalogue"),
    ],
)
def test_going_back_stays_on_the_hub(candidate: str | None, expected: str) -> None:
    assert pages.local_path(candidate, default="/catalogue") == expected


def test_an_items_fields_keep_the_schemas_order_and_the_registrys_personal_marks() -> None:
    schema = {
        "type": "object",
        "required": ["b"],
        "properties": {
            "b": {"type": "string", "title": "B", "x-personal": True},
            "a": {"type": ["integer", "null"]},
            "c": {"$ref": "#/$defs/code"},
            "d": {"type": "string", "format": "date", "enum": ["x"]},
        },
    }
    rows = views.field_rows(schema, fields=["a", "b", "c", "d"], personal=["b", "c"])
    assert [(r.name, r.type, r.required, r.personal) for r in rows] == [
        ("b", "string", True, True),
        ("a", "integer | null", False, False),
        ("c", "code", False, True),  # personal through its $ref: the registry says so
        ("d", "string (date): x", False, False),
    ]


def test_sign_in_and_search_inputs_are_checked_as_the_api_checks_them() -> None:
    assert views.sign_in_errors(username="a", password="p", code="") == []
    assert [e.field for e in views.sign_in_errors(username="", password="", code="1")] == [
        "username",
        "password",
        "code",
    ]
    assert views.sign_in_errors(username="a" * 65, password="p", code="123456")[0].field == (
        "username"
    )
    assert views.CatalogueSearch(q="x" * 201, owner="Tax!", tag="t" * 65).errors() == [
        views.FieldError("q", "Search text must be 200 characters or fewer"),
        views.FieldError("owner", "Choose an owner department from the list"),
        views.FieldError("tag", "Choose a tag from the list"),
    ]


def _source_messages() -> set[str | tuple[str, str]]:
    method_map = [("**.py", "python"), ("templates/**.html", "jinja2")]
    options = {"templates/**.html": {"extensions": "jinja2.ext.i18n", "trimmed": "true"}}
    found = extract_from_dir(
        str(CONSOLE),
        method_map,
        options_map=options,
        keywords={"_": None, "gettext": None, "ngettext": (1, 2), "N_": None},
    )
    return {message for _, _, message, _, _ in found}


def test_every_string_of_the_console_is_translated_into_simplified_chinese() -> None:
    catalog = language.merged_catalog("zh_Hans")  # messages.po and each page group's
    translated = {
        message.id
        for message in catalog
        if message.id
        and not message.fuzzy
        and all(message.string if isinstance(message.string, tuple) else [message.string])
    }
    assert _source_messages() - translated == set(), (
        "run python tools/console_translations.py (docs/console.md)"
    )
    chinese = language.translations("zh-Hans")
    assert chinese.gettext("Sign in") == "登录"
    assert chinese.ngettext("%(num)d data item", "%(num)d data items", 3) == "%(num)d 个数据项"


@pytest.mark.parametrize("folder", ["govuk-frontend"])
def test_the_vendored_files_are_the_ones_their_checksums_name(folder: str) -> None:
    directory = CONSOLE / "assets" / folder
    listed = {}
    for line in (directory / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ")
        listed[name] = digest
    present = {p.name for p in directory.iterdir() if p.name != "SHA256SUMS"}
    assert set(listed) == present
    for name, digest in listed.items():
        assert hashlib.sha256((directory / name).read_bytes()).hexdigest() == digest, name
    assert "MIT License" in (directory / "LICENSE.txt").read_text()


def test_no_font_or_image_of_the_gov_uk_brand_is_shipped_or_served() -> None:
    css = assets.asset("console.css").decode()
    assert "GDS Transport" not in css
    assert "@font-face" not in css
    shipped = [p.name for p in (CONSOLE / "assets").rglob("*") if p.is_file()]
    assert not [name for name in shipped if name.endswith((".woff", ".woff2", ".png", ".ico"))]
    assert all(
        files("onceonly.hub.console").joinpath("assets", path).is_file()
        for path, _ in assets.ASSETS.values()
    )


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short-1a", "Enter a password of at least 12 characters"),
        ("x1" * 129, "Enter a password of 256 characters or fewer"),
        ("my-maret-horse-battery", "Enter a password that does not contain the username"),
        (
            "abcabcabcabcabc",
            "Enter a password with more than 3 different characters: this one repeats the same few",
        ),
    ],
)
def test_the_account_form_names_the_password_rule_that_failed(password: str, message: str) -> None:
    form = admin_views.PersonForm(username="maret", display_name="M", password=password)
    errors = form.body(new=True)
    assert isinstance(errors, list)
    (error,) = [e for e in errors if e.field == "password"]
    assert error.message == message  # the one rule it breaks


def test_a_page_of_another_service_names_itself_and_has_no_api_link() -> None:
    """layout.html's blocks for the citizen's pages: service_name, service_home and
    footer_links (the staff's API documentation link)."""
    citizen = pages.environment("en").from_string(
        '{% extends "layout.html" %}{% block title %}Your data{% endblock %}'
        "{% block service_name %}Who used my data{% endblock %}"
        "{% block service_home %}/citizen{% endblock %}{% block footer_links %}{% endblock %}"
    )
    html = citizen.render(language="en", languages={}, path="/citizen", navigation=[], visit=None)
    assert "<title>Your data \N{EN DASH} Who used my data</title>" in html
    assert 'href="/citizen" class="govuk-generic-header__homepage-link">Who used my data<' in html
    assert "Onceonly console" not in html
    assert 'href="/docs"' not in html


def test_chinese_says_owner_department_and_names_the_fields_a_grant_allows() -> None:
    chinese = language.translations("zh-Hans")
    # 所有部门 reads "all departments"; the item's owner is 数据所有部门.
    assert chinese.gettext("Owner department") == "数据所有部门"
    assert chinese.gettext("Owner") == "数据所有部门"
    # The grant page lists the fields it allows (steward/grant.html); "Fields" is the
    # item page's count of fields (字段数).
    assert chinese.gettext("Fields granted") == "授予的字段"
    assert chinese.gettext("Fields") == "字段数"
