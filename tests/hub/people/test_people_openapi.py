"""What the OpenAPI document says of the people routes' refusals."""

import json

from tests.hub.openapi.references import problem_types, resolved
from tests.hub.openapi.regenerate import SNAPSHOT


def test_putting_a_person_declares_the_subject_conflict() -> None:
    """OidcSubjectTaken (409 person-conflict, commit b005247) is in the document."""
    document = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    responses = document["paths"]["/v1/admin/people/{username}"]["put"]["responses"]
    assert problem_types(resolved(document, responses["409"])) == {"person-conflict"}
