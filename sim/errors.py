"""User-facing errors: one message naming the file, the key path, the value and what was expected."""

from __future__ import annotations


class UserError(Exception):
    """An error in what the user gave us; the CLI prints it and exits with code 2.

    Args:
        source: The file (or ``--set``) the bad value came from.
        key_path: Dotted path of the bad key, or ``""`` for the whole file.
        value: The offending value (shown with ``repr``).
        expected: What would have been accepted, ideally with an example.
    """

    def __init__(self, source: str, key_path: str, value: object, expected: str):
        self.source = source
        self.key_path = key_path
        self.value = value
        self.expected = expected
        where = f"{source}: {key_path}" if key_path else source
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"{where} = {shown}: expected {expected}")


def did_you_mean(word: str, choices) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices`` to ``word``, or an empty string."""
    import difflib

    hint = difflib.get_close_matches(str(word), list(choices), n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


class SpecKeyError(ValueError):
    """Raised inside a spec validator: names the spec key (a dotted path from the file's top)."""

    def __init__(self, key: str, value: object, expected: str):
        super().__init__(expected)
        self.key, self.value = key, value


def spec_error(exc, source: str, allowed: list[str] | tuple[str, ...] = ()) -> UserError:
    """The first error of a pydantic ``ValidationError`` of a spec file (sweep, screen, calibration).

    Args:
        exc: The validation error.
        source: The spec file.
        allowed: Keys that may appear where an unknown key was found (for "did you mean").
    """
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    keyed = (err.get("ctx") or {}).get("error")
    if isinstance(keyed, SpecKeyError):
        return UserError(source, keyed.key, keyed.value, str(keyed))
    if err["type"] == "extra_forbidden":
        return UserError(source, loc, err.get("input"), "no such key" + did_you_mean(err["loc"][-1], allowed))
    if err["type"] == "missing":
        return UserError(source, loc, None, "this required key to be given")
    return UserError(source, loc, err.get("input"), err["msg"].removeprefix("Value error, ").removeprefix("Input should be "))
