"""Write the committed snapshot of the hub's OpenAPI document, ``docs/openapi.json``.

    python -m tests.hub.openapi.regenerate

The document depends on the routes only, never on settings; test_openapi_document
fails while the snapshot and the served document differ.
"""

import json
from pathlib import Path
from typing import Any

from onceonly.hub.app import create_app

SNAPSHOT = Path(__file__).resolve().parents[3] / "docs" / "openapi.json"
COMMAND = "python -m tests.hub.openapi.regenerate"


def document() -> dict[str, Any]:
    return create_app().openapi()


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    SNAPSHOT.write_text(render(document()), encoding="utf-8")
    print(f"wrote {SNAPSHOT}")
