"""A reader of the Bicep that deploy/azure holds: its top-level declarations and their bodies.

No Bicep compiler can be installed here, so the tests read the templates' structure with this:
declarations (``param``, ``var``, ``resource``, ``module``, ``output``) with their decorators
and their value's text, bracket-matched with Bicep's strings (``'…'``, ``\\'`` escapes, ``${…}``
interpolation) and comments skipped. It reads what these templates use, not all of Bicep.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

OPENERS = {"{": "}", "[": "]", "(": ")"}
DECLARATION = re.compile(r"^(param|var|resource|module|output)\s+(\w+)\b", re.M)
GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True)
class Declaration:
    kind: str  # param, var, resource, module or output
    name: str
    header: str  # what stands between the name and "=" (type, 'Type@version', module path, existing)
    value: str  # the text after "=", brackets matched; "" for a param without a default
    decorators: str  # the @… lines and comments above it
    file: Path

    @property
    def resource_type(self) -> str:
        return self.header.strip().split()[0].strip("'").split("@")[0]

    @property
    def api_version(self) -> str:
        return self.header.strip().split()[0].strip("'").split("@")[1]

    @property
    def existing(self) -> bool:
        return self.header.split()[-1] == "existing"

    def field(self, key: str) -> str | None:
        """The expression of the first ``key:`` in the value, to the end of its line or bracket."""
        match = re.search(rf"\b{key}:\s*", self.value)
        if match is None:
            return None
        return _expression(self.value, match.end())


def _skip_string(text: str, i: int) -> int:
    """Index after the string that starts at text[i] == "'"."""
    i += 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
        elif text[i] == "'":
            return i + 1
        elif text.startswith("${", i):
            i = _skip_brackets(text, i + 1)
        else:
            i += 1
    raise ValueError("unterminated string")


def _skip_brackets(text: str, i: int) -> int:
    """Index after the bracket group that opens at text[i]."""
    closing = [OPENERS[text[i]]]
    i += 1
    while closing:
        c = text[i]
        if c == "'":
            i = _skip_string(text, i)
            continue
        if text.startswith("//", i):
            i = text.index("\n", i)
            continue
        if c in OPENERS:
            closing.append(OPENERS[c])
        elif c in "}])":
            if c != closing.pop():
                raise ValueError(f"unbalanced {c!r} at {i}")
        i += 1
    return i


def _expression(text: str, i: int) -> str:
    """The text from i to the first newline outside brackets and strings."""
    start = i
    while i < len(text) and text[i] != "\n":
        if text[i] == "'":
            i = _skip_string(text, i)
        elif text[i] in OPENERS:
            i = _skip_brackets(text, i)
        elif text.startswith("//", i):
            break
        else:
            i += 1
    return text[start:i].strip()


def read(path: Path) -> list[Declaration]:
    """Every top-level declaration of one Bicep file, in order."""
    text = Path(path).read_text(encoding="utf-8")
    declarations, previous_end = [], 0
    for match in DECLARATION.finditer(text):
        if match.start() < previous_end:
            continue  # inside the previous declaration's value
        line_end = text.find("\n", match.end())
        line_end = len(text) if line_end < 0 else line_end
        equals = _top_level_equals(text, match.end(), line_end)
        header = text[match.end():equals if equals >= 0 else line_end]
        value = _expression(text, equals + 1) if equals >= 0 else ""
        end = (text.index(value, equals) + len(value)) if value else line_end
        declarations.append(Declaration(match.group(1), match.group(2), header.strip(), value,
                                        text[previous_end:match.start()], Path(path)))
        previous_end = end
    return declarations


def _top_level_equals(text: str, i: int, line_end: int) -> int:
    while i < line_end:
        if text[i] == "'":
            i = _skip_string(text, i)
        elif text[i] == "=":
            return i
        else:
            i += 1
    return -1


def top_level_keys(obj: str) -> list[str]:
    """The keys of an object literal ``{ … }`` (not of objects nested in it)."""
    assert obj.startswith("{"), obj[:40]
    keys, i, at_line_start = [], 1, True
    while i < len(obj) - 1:
        c = obj[i]
        if c == "\n":
            at_line_start = True
            i += 1
            continue
        if at_line_start and c in " \t":
            i += 1
            continue
        if at_line_start:
            match = re.match(r"(\w+)\s*:", obj[i:])
            if match:
                keys.append(match.group(1))
            at_line_start = False
        if c == "'":
            i = _skip_string(obj, i)
        elif c in OPENERS:
            i = _skip_brackets(obj, i)
        else:
            i += 1
    return keys
