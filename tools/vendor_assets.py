"""Refresh the front-end files the project vendors from the npm registry.

    python tools/vendor_assets.py govuk-frontend [--version 6.6.0] [--sass 1.108.2]
    python tools/vendor_assets.py axe-core [--version 4.14.1]

``govuk-frontend``: the web console's design system (decision 0028). Its Sass is
compiled here, with the npm ``sass`` compiler, from ``hub/console/assets/console.scss``
(the GOV.UK brand turned off: system fonts instead of GDS Transport, which is
licensed for GOV.UK alone); the CSS, the JavaScript module and the licence go to
``hub/console/assets/govuk-frontend/`` with ``SOURCE.md`` (versions, npm integrity)
and ``SHA256SUMS``. No font and no image of GOV.UK's is copied.

``axe-core``: the accessibility checker the browser tests inject (never served by the
hub), to ``tests/hub/console/axe/``.

Needs node and npm; the hub itself never does: the results are committed, and a fresh
``pip install -e .`` uses them as they are. Check the result with
``pytest tests/hub/console`` (the checksums, and every page in Chromium with axe-core).
"""

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONSOLE_ASSETS = ROOT / "hub" / "console" / "assets"
GOVUK_DIR = CONSOLE_ASSETS / "govuk-frontend"
AXE_DIR = ROOT / "tests" / "hub" / "console" / "axe"
# govuk-frontend's npm package carries no licence file; its repository's LICENSE.txt
# (MIT, as package.json's "license" says) is kept here word for word.
GOVUK_LICENCE = """The MIT License (MIT)

Copyright (c) 2018 Crown Copyright (Government Digital Service)

Permission is hereby granted, free of charge, to any person obtaining a copy of
this software and associated documentation files (the "Software"), to deal in
the Software without restriction, including without limitation the rights to
use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies of
the Software, and to permit persons to whom the Software is furnished to do so,
subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS
FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR
COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER
IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN
CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
"""


def npm(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["npm", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


def install(packages: list[str], *, into: Path) -> dict[str, str]:
    """``npm install`` of exact versions into a scratch folder (npm checks each
    tarball against the registry's integrity); the integrity of each, by name@version."""
    npm("init", "-y", cwd=into)
    npm("install", "--no-audit", "--no-fund", "--ignore-scripts", *packages, cwd=into)
    return {
        spec: json.loads(npm("view", spec, "dist.integrity", "--json", cwd=into))
        for spec in packages
    }


def write_sums(directory: Path) -> None:
    lines = [
        f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}\n"
        for path in sorted(directory.iterdir())
        if path.is_file() and path.name != "SHA256SUMS"
    ]
    (directory / "SHA256SUMS").write_text("".join(lines))


def source_note(title: str, integrities: dict[str, str], body: str) -> str:
    listed = "".join(f"- `{spec}`: `{value}`\n" for spec, value in integrities.items())
    heading = "npm packages and their integrity (as the registry gives it):"
    return f"# {title}\n\n{body}\n\n{heading}\n\n{listed}"


def govuk_frontend(version: str, sass: str) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        specs = [f"govuk-frontend@{version}", f"sass@{sass}"]
        integrities = install(specs, into=work)
        modules = work / "node_modules"
        dist = modules / "govuk-frontend" / "dist" / "govuk"
        GOVUK_DIR.mkdir(parents=True, exist_ok=True)
        for old in GOVUK_DIR.iterdir():
            old.unlink()
        subprocess.run(
            [
                "node",
                str(modules / "sass" / "sass.js"),
                f"--load-path={modules}",
                "--style=compressed",
                "--no-source-map",
                "--quiet-deps",
                str(CONSOLE_ASSETS / "console.scss"),
                str(GOVUK_DIR / "console.css"),
            ],
            check=True,
        )
        shutil.copyfile(dist / "govuk-frontend.min.js", GOVUK_DIR / "govuk-frontend.min.js")
    (GOVUK_DIR / "LICENSE.txt").write_text(GOVUK_LICENCE)
    body = (
        "GOV.UK Frontend (MIT, `LICENSE.txt`; Crown copyright, Government Digital Service),\n"
        "refreshed by `python tools/vendor_assets.py govuk-frontend` (decision 0028).\n"
        "`console.css` is compiled from `../console.scss` with the brand turned off (system\n"
        "fonts, no GDS Transport, no crown); `govuk-frontend.min.js` is copied unchanged."
    )
    (GOVUK_DIR / "SOURCE.md").write_text(
        source_note("GOV.UK Frontend, vendored", integrities, body)
    )
    write_sums(GOVUK_DIR)


def axe_core(version: str) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        integrities = install([f"axe-core@{version}"], into=work)
        package = work / "node_modules" / "axe-core"
        AXE_DIR.mkdir(parents=True, exist_ok=True)
        for name in ("axe.min.js", "LICENSE", "LICENSE-3RD-PARTY.txt"):
            shutil.copyfile(package / name, AXE_DIR / name)
    body = (
        "axe-core by Deque Systems (MPL-2.0, `LICENSE`; bundled libraries in\n"
        "`LICENSE-3RD-PARTY.txt`), for the console's browser tests only: injected into\n"
        "pages by the tests, never served by the hub. Refreshed by\n"
        "`python tools/vendor_assets.py axe-core`."
    )
    (AXE_DIR / "SOURCE.md").write_text(source_note("axe-core, vendored", integrities, body))
    write_sums(AXE_DIR)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    which = parser.add_subparsers(dest="package", required=True)
    govuk = which.add_parser("govuk-frontend")
    govuk.add_argument("--version", default="6.6.0")
    govuk.add_argument("--sass", default="1.108.2")
    axe = which.add_parser("axe-core")
    axe.add_argument("--version", default="4.14.1")
    args = parser.parse_args(argv)
    if args.package == "govuk-frontend":
        govuk_frontend(args.version, args.sass)
    else:
        axe_core(args.version)


if __name__ == "__main__":
    main(sys.argv[1:])
