"""A subject identifier is refused, never normalized (decision 0061): white space at
either end, a control character (NUL too), a lone surrogate, an invisible format
character (Unicode category Cf: zero-width space, BOM, bidirectional controls), a
form other than NFC, a compatibility character that NFKC changes (full-width forms,
superscripts, ligatures) or a decimal digit other than ASCII 0-9 (decision 0072).

The rule is one function (``subject_problem``); the provider refuses a query whose
subject breaks it with 400 ``invalid-request`` before any source is asked. The docs'
own table keys addresses on ``CHAR(11)``, which PostgreSQL compares ignoring trailing
spaces: without the rule ``"38001085718 "`` read the real person's record while the
hub filed the query under the padded string's pseudonym, and a NUL made PostgreSQL
fail (503). Both run against real SQLite and PostgreSQL, over HTTP on loopback. A
source that converts (``int(subject)``) read the real record for full-width or
Arabic-Indic digits, under another pseudonym at the hub.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from onceonly.adapters import (
    CallableSource,
    ImportFailed,
    RecordStore,
    SqlSource,
    base64url,
    create_provider_app,
    load_config,
)
from onceonly.adapters import subject_problem as problem_of

from tests.adapters.adapter_testing import (
    CONSUMER,
    ITEM,
    PURPOSE,
    SCHEMA,
    SUBJECT,
    HubDouble,
    serve,
    write_config,
)

# The same digits in other scripts: Python's int() reads each as the ASCII ones
FULL_WIDTH = SUBJECT.translate({ord("0") + n: 0xFF10 + n for n in range(10)})
ARABIC_INDIC = SUBJECT.translate({ord("0") + n: 0x0660 + n for n in range(10)})
DEVANAGARI = SUBJECT.translate({ord("0") + n: 0x0966 + n for n in range(10)})

POSTGRES = os.environ.get("ONCEONLY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")

REFUSED = {
    "trailing space": SUBJECT + " ",
    "leading space": " " + SUBJECT,
    "trailing tab": SUBJECT + "\t",
    "trailing newline": SUBJECT + "\n",
    "no-break space": SUBJECT + "\u00a0",
    "ideographic space": "\u3000" + SUBJECT,
    "only spaces": "   ",
    "NUL": SUBJECT[:5] + "\x00" + SUBJECT[5:],
    "NUL at the end": SUBJECT + "\x00",
    "escape": SUBJECT + "\x1b[2J",
    "DEL": SUBJECT + "\x7f",
    "C1 control": SUBJECT + "\x85",
    "lone surrogate": SUBJECT + "\ud800",
    "NFD": "Mu\u0308ller",  # u + combining diaeresis; NFC is "Müller"
    "compatibility-decomposed but not NFC": "\u212b",  # ANGSTROM SIGN, NFC is U+00C5
    # Format characters (Unicode category Cf): invisible, carried by a paste or export
    "zero-width space first": "\u200b" + SUBJECT,
    "zero-width space last": SUBJECT + "\u200b",
    "byte order mark": "\ufeff" + SUBJECT,
    "left-to-right mark": SUBJECT + "\u200e",
    "right-to-left mark": SUBJECT + "\u200f",
    "right-to-left override": "\u202e" + SUBJECT[::-1],
    "left-to-right embedding": "\u202a" + SUBJECT,
    "first strong isolate": "\u2068" + SUBJECT + "\u2069",
    "word joiner": SUBJECT[:5] + "\u2060" + SUBJECT[5:],
    "soft hyphen": SUBJECT[:7] + "\u00ad" + SUBJECT[7:],
    # NFC, but not NFKC, or digits int() reads (decision 0072)
    "full-width digits": FULL_WIDTH,
    "one full-width digit": SUBJECT[:-1] + FULL_WIDTH[-1],
    "Arabic-Indic digits": ARABIC_INDIC,
    "Devanagari": DEVANAGARI,
    "superscript two": SUBJECT[:-1] + "\u00b2",
    "ligature fi": "\ufb01",  # LATIN SMALL LIGATURE FI is NFC, NFKC is "fi"
    "full-width letters": "\uff21\uff22 123456",
    "circled digit": "\u2460" + SUBJECT[1:],
    # Default-ignorable code points not in Cf: invisible, and a collation may ignore them
    "combining grapheme joiner": SUBJECT + "\u034f",
    "variation selector 16": SUBJECT + "\ufe0f",
    "variation selector 1": SUBJECT[:3] + "\ufe00" + SUBJECT[3:],
    "Mongolian free variation selector": SUBJECT + "\u180b",
    "Hangul choseong filler": SUBJECT + "\u115f",
    "Hangul filler": SUBJECT + "\u3164",
    "half-width Hangul filler": SUBJECT + "\uffa0",
    "Khmer inherent vowel": SUBJECT + "\u17b4",
    "variation selector 17": SUBJECT + "\U000e0100",
    # No character assigned: noncharacters, unassigned, private use
    "noncharacter U+FFFF": SUBJECT + "\uffff",
    "noncharacter U+FDD0": SUBJECT + "\ufdd0",
    "noncharacter U+1FFFE": SUBJECT + "\U0001fffe",
    "unassigned": SUBJECT + "\u0378",
    "private use": SUBJECT + "\ue000",
    "supplementary private use": SUBJECT + "\U000f0000",
    "line separator": SUBJECT[:3] + "\u2028" + SUBJECT[3:],
    "paragraph separator": SUBJECT[:3] + "\u2029" + SUBJECT[3:],
    "Ogham space mark": "AB\u1680123456",
    "replacement character": SUBJECT[:3] + "\ufffd" + SUBJECT[3:],
}
TAKEN = {
    "birth code": SUBJECT,
    "registry code": "10000011",
    "NFC letters": "Müller",
    "inner space": "AB 123456",
    "dots": "..",
    "Greek letters": "\u0391\u0392 123456",
    "Cyrillic letters": "\u0416\u0443\u043a",
    "combining mark with no precomposed form": "Q\u0307 123",  # NFC, Mn kept
    "Hangul syllables": "\ud55c\uad6d 123",
}


@pytest.mark.parametrize("subject", REFUSED.values(), ids=REFUSED.keys())
def test_the_rule_refuses(subject: str) -> None:
    problem = problem_of(subject)
    assert problem is not None
    assert subject.strip() not in problem or not subject.strip()  # never quotes it


@pytest.mark.parametrize("subject", TAKEN.values(), ids=TAKEN.keys())
def test_the_rule_takes(subject: str) -> None:
    assert problem_of(subject) is None


@dataclass
class Provider:
    url: str
    http: httpx.Client
    hub: HubDouble

    def query(self, subject: str) -> httpx.Response:
        body = {"subject": subject, "purpose": PURPOSE, "consumer": CONSUMER, "version": 1}
        # JSON's \u escapes carry a lone surrogate, which has no UTF-8 form
        digest = hashlib.sha256(subject.encode("utf-8", "surrogatepass")).digest()
        token = self.hub.request_token(subject_sha256=base64url.encode(digest))
        return self.http.post(
            f"{self.url}/v1/items/{ITEM}/records/query",
            content=json.dumps(body),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def register(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The docs' addresses table (person_code CHAR(11)) with one address; its URL and name."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'registry.db'}"
    else:
        url = POSTGRES.replace("postgresql://", "postgresql+psycopg://")
    table = f"addresses_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    f"CREATE TABLE {table} (person_code CHAR(11) PRIMARY KEY,"
                    " line1 VARCHAR(200) NOT NULL, town VARCHAR(100) NOT NULL)"
                )
            )
            connection.execute(
                sa.text(f"INSERT INTO {table} VALUES ('{SUBJECT}', 'Pikk 1', 'Tallinn')")
            )
    except sa.exc.OperationalError as error:
        engine.dispose()
        pytest.skip(f"no PostgreSQL at {POSTGRES} ({type(error).__name__})")
    yield url, table
    with engine.begin() as connection:
        connection.execute(sa.text(f"DROP TABLE {table}"))
    engine.dispose()


@pytest.fixture
def provider(tmp_path: Path, hub: HubDouble, register: tuple[str, str]) -> Iterator[Provider]:
    url, table = register
    engine = sa.create_engine(url)
    source = SqlSource(
        engine,
        query=f"SELECT line1, town FROM {table} WHERE person_code = :subject",
        columns={"street": "line1", "city": "town"},
    )
    config = load_config(write_config(tmp_path, hub_url=hub.url))
    app = create_provider_app(config, sources={ITEM: source})
    with httpx.Client() as http, serve(app) as served:
        yield Provider(url=served, http=http, hub=hub)
    engine.dispose()


def test_the_subject_itself_reads_its_record(provider: Provider) -> None:
    answer = provider.query(SUBJECT)
    assert answer.status_code == 200, answer.text
    assert answer.json()["record"] == {"street": "Pikk 1", "city": "Tallinn"}


@pytest.mark.parametrize(
    "name",
    [
        "trailing space",
        "leading space",
        "NUL",
        "NUL at the end",
        "NFD",
        "lone surrogate",
        "full-width digits",
        "Arabic-Indic digits",
    ],
)
def test_a_subject_the_rule_refuses_is_400_and_reads_nothing(
    provider: Provider, name: str, tmp_path: Path, hub: HubDouble
) -> None:
    answer = provider.query(REFUSED[name])

    assert answer.status_code == 400, answer.text
    problem = answer.json()
    assert problem["type"] == "urn:onceonly:problem:invalid-request"
    assert problem["detail"].startswith("the body is invalid: subject: ")
    assert SUBJECT not in answer.text
    config = load_config(tmp_path / "adapter.toml")
    with RecordStore(config.store_path) as store:
        (entry,) = store.served_entries()  # the token held: the refusal has its entry
    assert (entry.outcome, entry.reason) == ("refused", "invalid-request")


@pytest.fixture
def converting(tmp_path: Path, hub: HubDouble) -> Iterator[Provider]:
    """A source that reads the subject as a number, as ``int()`` does: the register is
    keyed on integers (a ``BIGINT`` column behind a function, say)."""
    register = {int(SUBJECT): {"street": "Pikk 1", "city": "Tallinn"}}
    source = CallableSource(lambda item, subject: register.get(int(subject)))
    config = load_config(write_config(tmp_path, hub_url=hub.url))
    app = create_provider_app(config, sources={ITEM: source})
    with httpx.Client() as http, serve(app) as served:
        yield Provider(url=served, http=http, hub=hub)


def test_a_converting_source_reads_the_record_for_the_subject_itself(converting: Provider) -> None:
    answer = converting.query(SUBJECT)
    assert answer.status_code == 200, answer.text
    assert answer.json()["record"]["city"] == "Tallinn"


# Each is read by int() as SUBJECT
CONVERTED = ["full-width digits", "one full-width digit", "Arabic-Indic digits", "Devanagari"]


@pytest.mark.parametrize("name", CONVERTED)
def test_digits_a_converting_source_would_read_are_refused_before_it_is_asked(
    converting: Provider, name: str
) -> None:
    assert int(REFUSED[name]) == int(SUBJECT)  # what the source would have read

    answer = converting.query(REFUSED[name])

    assert answer.status_code == 400, answer.text
    assert answer.json()["type"] == "urn:onceonly:problem:invalid-request"
    assert "decimal digit other than ASCII 0-9" in answer.json()["detail"]
    assert "Tallinn" not in answer.text


@pytest.mark.parametrize("name", ["trailing space", "NUL", "NFD", "full-width digits"])
def test_an_import_refuses_a_subject_the_hub_would_never_ask_for(tmp_path: Path, name: str) -> None:
    csv_file = tmp_path / "in.csv"
    csv_file.write_text(f"subject,street,city\n{SUBJECT},Pikk 1,Tallinn\n{REFUSED[name]},A 1,B\n")

    with RecordStore(tmp_path / "records.db") as store, pytest.raises(ImportFailed) as caught:
        store.import_csv(ITEM, csv_file, SCHEMA)

    (error,) = caught.value.report.errors
    assert error.row == 3
    assert error.message.startswith("subject ")
