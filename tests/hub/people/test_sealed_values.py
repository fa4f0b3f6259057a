"""Values the hub sealed before it had one sealer (kit.sealing) still open: TOTP secrets
in the database, in both formats, and the OpenID Connect login cookie a browser may
hold across an upgrade. Each value below was written by the earlier code, under the
keys that fixed key files give (tests.hub.test_keys.fixed_keys)."""

import pytest

from onceonly.hub.keys import HubKeys, KeyLabel
from onceonly.hub.people import credentials, oidc

from tests.hub.test_keys import fixed_keys

PERSON_ID = "6f1c0d2a9b8e4c7f8a3d5e6f7a8b9c0d"
# Sealed before decision 0017: no prefix, padded base64url, under the legacy key.
LEGACY = {
    "JBSWY3DPEHPK3PXP": "DA0ODxAREhMUFRYXH2eVNDbBZxdMOcZkJ76OhIRtzCv4v5HrPjiBAsV4YyA=",
    "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXPA": (
        "DA0ODxAREhMUFRYXH2eVNDbBZxdMOcZkJ76OhL3tLOf8nGEnf7YNNOwRLYuatDVy5xekIlN5__j9I8KTrA=="
    ),
    "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP": (
        "AAECAwQFBgcICQoLrTX57oiB701rgXJncupc_ssPzof_4rxRRyZZysf6q0znSVq72lAVK7PjuHsxhAvp"
    ),
}
# Sealed under the derivation root of the key files (v2.<root id>.<sealed>).
V2_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
V2 = "v2.d01531f1.TwU-FfA04J-v00NZeDBN6A40U13j4u9mALl-PBc0GAx16c64gETObiGcIuTLnzaslK3nyxJyx1yKjioP"
COOKIE = (
    "1JMOk5s5TJ4xZtr-NON-aTM2V0q3hl3js93LiI-0teZ7s4GTaLfTAGEa1Oqf1hZTClTNjzXBnEkd-5MJwHbo9HkU3l"
    "DaOwrM2m-JaOCnXsFQ1df_KvMNZO_Q-bHsghRig3G8j3_2Op7KtyGsvUc6A5819FdJjHk2gd0He8xZ6kbRa4CQbc0M"
    "n04a7sbjJhBVreE4NBdu2oI3H4wWK1lAmQkmmqkKZbaOmzNDlm26VPgNrRRy-ZFLOgXzlQR2kBo_IbG71kmn0VyB8t"
    "RrDBVl-ST0wY9hja6Vs_FdYj-i01n-RwUNXIaJx8e4CxNwizS8osE3UGFvzp4lNHD8sNVilrq-qwcutFlCUA"
)
COOKIE_EXPIRES = 1_900_000_000


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> HubKeys:
    return fixed_keys(tmp_path_factory.mktemp("keys"))


@pytest.mark.parametrize(("secret", "sealed"), LEGACY.items())
def test_a_totp_secret_sealed_before_decision_0017_opens_under_the_legacy_key(
    keys: HubKeys, secret: str, sealed: str
) -> None:
    assert credentials.sealed_root(sealed) is None
    legacy = keys.legacy_totp_seal_key()
    assert credentials.unseal_legacy(legacy, sealed, person_id=PERSON_ID) == secret


def test_a_totp_secret_sealed_under_a_root_opens_under_that_root(keys: HubKeys) -> None:
    root = keys.root(credentials.sealed_root(V2))
    key = keys.derived(KeyLabel.TOTP_SEAL, root=root)
    assert credentials.unseal(key, V2, person_id=PERSON_ID) == V2_SECRET


def test_a_login_cookie_sealed_before_opens(keys: HubKeys) -> None:
    login = oidc.LoginState.open(COOKIE, state="s" * 43, keys=keys, now=COOKIE_EXPIRES - 1)
    assert (login.nonce, login.verifier, login.expires) == ("n" * 43, "v" * 64, COOKIE_EXPIRES)


def test_what_is_sealed_now_opens_as_before(keys: HubKeys) -> None:
    root = keys.root()
    key = keys.derived(KeyLabel.TOTP_SEAL, root=root)
    sealed = credentials.seal(key, V2_SECRET, root_id=root.id, person_id=PERSON_ID)
    assert sealed.startswith("v2.d01531f1.")
    assert len(sealed) == len(V2)
    assert credentials.unseal(key, sealed, person_id=PERSON_ID) == V2_SECRET
    login = oidc.LoginState(
        state="s" * 43, nonce="n" * 43, verifier="v" * 64, cli_port=None, expires=COOKIE_EXPIRES
    )
    cookie = login.seal(keys)
    assert len(cookie) == len(COOKIE)
    assert oidc.LoginState.open(cookie, state="s" * 43, keys=keys, now=0) == login
