"""Reading deploy/Dockerfile and .dockerignore without a Docker engine.

Only what the deploy tests need: instructions per stage (continuation lines joined,
comments dropped), ``ARG`` defaults for the base image, exec-form arguments, and the
.dockerignore rule (later patterns win, ``!`` re-includes, a pattern that matches a
folder matches what is inside it).
"""

import json
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    value: str

    @property
    def flags(self) -> dict[str, str]:
        """``--from=builder --chown=1:1 a b`` -> {"from": "builder", "chown": "1:1"}."""
        return dict(re.findall(r"--([a-z-]+)=(\S+)", self.value))

    @property
    def words(self) -> list[str]:
        """The arguments after the flags (shell form, split on white space)."""
        return [word for word in self.value.split() if not word.startswith("--")]

    def exec_form(self) -> list[str]:
        """The JSON array of an exec-form ``CMD``/``ENTRYPOINT`` (after ``CMD`` for a
        ``HEALTHCHECK``)."""
        text = self.value.split(" CMD ", 1)[1] if self.keyword == "HEALTHCHECK" else self.value
        argv = json.loads(text)
        assert isinstance(argv, list), f"{self.keyword} is not in exec form: {self.value}"
        return [str(arg) for arg in argv]


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"stage {self.name or self.base} has no {keyword}"
        return found[-1]


def instructions(text: str) -> list[Instruction]:
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or (stripped.startswith("#") and not pending.strip()):
            continue
        if stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    assert not pending, "the Dockerfile ends in a continuation line"
    result = []
    for line in logical:
        keyword, _, value = line.partition(" ")
        result.append(Instruction(keyword.upper(), " ".join(value.split())))
    return result


def stages(path: Path = DOCKERFILE) -> list[Stage]:
    """The build stages, each base image with global ``ARG`` defaults substituted."""
    args: dict[str, str] = {}
    found: list[Stage] = []
    for instruction in instructions(path.read_text(encoding="utf-8")):
        if instruction.keyword == "ARG" and not found:
            name, _, default = instruction.value.partition("=")
            args[name] = default
        elif instruction.keyword == "FROM":
            words = instruction.words
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            found.append(Stage(base=base, name=name))
        elif found:
            found[-1].instructions.append(instruction)
    return found


def ignore_patterns(path: Path = DOCKERIGNORE) -> list[str]:
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def is_ignored(relative: str, patterns: list[str]) -> bool:
    """Whether the build context leaves ``relative`` (a POSIX path) out."""
    parts = PurePosixPath(relative).parts
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _regex(pattern.removeprefix("!").strip("/"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            ignored = not negated
    return ignored


def _regex(pattern: str) -> re.Pattern[str]:
    out = ""
    for token in re.split(r"(\*\*/|\*\*|\*|\?)", pattern):
        out += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
            token, re.escape(token)
        )
    return re.compile(out)
