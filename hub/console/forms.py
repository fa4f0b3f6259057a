"""A form's fields, read from an ``application/x-www-form-urlencoded`` body.

The console's forms have a few short text fields and no files, so the body is parsed
here with the standard library (no multipart parser); the hub's middleware has
already bounded its size. A malformed body (another media type, bytes that are not
UTF-8, a field given twice, too many fields, a NUL) is refused as a whole.
"""

from urllib.parse import parse_qsl

MAX_FIELDS = 32


class MalformedForm(ValueError):
    """The body is not a form the console reads."""


def fields(content_type: str | None, body: bytes) -> dict[str, str]:
    """The form's fields, each given once: name -> value (blank values kept)."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        raise MalformedForm("not an application/x-www-form-urlencoded form")
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=bool(text),
            max_num_fields=MAX_FIELDS,
            errors="strict",
        )
    except (UnicodeDecodeError, ValueError) as error:
        raise MalformedForm("the form does not parse") from error
    found: dict[str, str] = {}
    for name, value in pairs:
        if name in found or "\0" in name or "\0" in value:
            raise MalformedForm("a field is given twice, or holds a NUL")
        found[name] = value
    return found
