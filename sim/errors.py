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
