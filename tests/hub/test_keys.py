"""Every key the hub uses comes from ``HubKeys`` and stays what it was: the keys derived
per label, the pseudonyms the audit log keeps, and the legacy key that opens TOTP secrets
sealed before decision 0017. A change to any of them would leave stored data unreadable
(sealed secrets), unmatched (pseudonyms in the log) or reset (sign-in failure counts),
so each is pinned here to what the hub computed from these fixed key files."""

from pathlib import Path

import pytest

from onceonly.hub.keys import HubKeys, KeyLabel

DERIVED = {
    KeyLabel.DPOP_NONCE: "20954e3fef2ac524d528b07c69efb3a55e2a64141699b677f1d5f49c7e10f2f4",
    KeyLabel.TOTP_SEAL: "912ce2b2b3d2952afc61f02639435f9b5fd023b901537e70c496c200367df4dc",
    KeyLabel.OIDC_LOGIN: "006895045e2364beb7172293b5605daba45a418f6fe0e0f6e8aef069048b7335",
    KeyLabel.OIDC_CODE: "4ff4889841035eadd49e257593b4d634961991e52152abb622931ed5a461f164",
    KeyLabel.SIGN_IN_FAILURES: "ca54c489fb3695cc0d87efb0b31edc1d9104b1ce3f9fcbf8765233b96e76a857",
    KeyLabel.CONSOLE_CSRF: "b533f52df483424e54809c2a6f53fa482218c2c833797e2d413e2ed6ae12a82e",
    KeyLabel.CITIZEN_SESSION: "918619deea651403def17caae5dcdb42c3823716a53c3527dcb3167648ccf959",
    # before 0a95d5a: keys.root().derive(b"onceonly/v1/console-audit-search") in the console
    KeyLabel.CONSOLE_AUDIT_SEARCH: (
        "076d24403d1255e3b534561425f194a77980250f8adaac7d28dd859680f76d88"
    ),
}
PSEUDONYM = "c28a693961ec9a16469ef748a70ab7831f989430736fb3955cdc658b3935e51f"
LEGACY_TOTP_SEAL = "8dd0bcf277ba0f909c48073c4d76dd2779cebaef19970637e5033531a4b852db"


def fixed_keys(directory: Path) -> HubKeys:
    """The hub's keys from fixed key files in ``directory``: the keys that every value
    pinned in these tests (and in tests/hub/people/test_sealed_values.py) was made under."""
    (directory / "pseudonym.key").write_text(bytes(range(32)).hex())
    (directory / "derivation.key").write_text(bytes(range(32, 64)).hex())
    return HubKeys.load(directory, create=True)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> HubKeys:
    return fixed_keys(tmp_path_factory.mktemp("keys"))


def test_every_label_derives_the_key_it_always_derived(keys: HubKeys) -> None:
    assert {label: keys.derived(label).hex() for label in KeyLabel} == DERIVED
    assert keys.root().id == "d01531f1"


def test_a_subjects_pseudonym_is_the_one_the_log_already_keeps(keys: HubKeys) -> None:
    assert keys.pseudonym("38001085718") == PSEUDONYM


def test_the_legacy_totp_seal_key_is_the_one_earlier_versions_sealed_with(
    keys: HubKeys,
) -> None:
    assert keys.legacy_totp_seal_key().hex() == LEGACY_TOTP_SEAL
    assert keys.legacy_totp_seal_key() not in {keys.derived(label) for label in KeyLabel}
