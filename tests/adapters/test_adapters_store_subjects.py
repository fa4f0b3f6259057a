"""``RecordStore.put`` applies the subject rule, as ``import_records`` does (decision
0061): it stored a padded or decomposed subject that the hub never asks for, and
announced a change the hub refused (400) and the publisher then dropped."""

from pathlib import Path

import pytest

from onceonly.adapters import RecordStore, subject_problem

from tests.adapters.adapter_testing import ITEM, RECORD
from tests.adapters.test_adapters_subjects import REFUSED, TAKEN


@pytest.mark.parametrize("subject", REFUSED.values(), ids=REFUSED.keys())
def test_put_refuses_a_subject_the_rule_refuses_and_stores_nothing(
    tmp_path: Path, subject: str
) -> None:
    with RecordStore(tmp_path / "records.db") as store:
        with pytest.raises(ValueError, match=r"^not stored: ") as refused:
            store.put(ITEM, subject, dict(RECORD))

        assert str(refused.value) == f"not stored: {subject_problem(subject)}"
        assert store.count(ITEM) == 0
        assert store.pending_changes() == []


@pytest.mark.parametrize("subject", ["", "1" * 257], ids=["empty", "257 characters"])
def test_put_refuses_a_subject_import_refuses(tmp_path: Path, subject: str) -> None:
    with (
        RecordStore(tmp_path / "records.db") as store,
        pytest.raises(ValueError, match="subject is"),
    ):
        store.put(ITEM, subject, dict(RECORD))


@pytest.mark.parametrize("subject", TAKEN.values(), ids=TAKEN.keys())
def test_put_stores_a_subject_the_rule_takes(tmp_path: Path, subject: str) -> None:
    with RecordStore(tmp_path / "records.db") as store:
        store.put(ITEM, subject, dict(RECORD))

        assert store.get(ITEM, subject) == RECORD
