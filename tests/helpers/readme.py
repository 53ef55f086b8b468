"""The README's runnable examples: every fenced ``bash`` and ``python`` block, with the reason to
skip it when the README gives one.

A block is skipped only with a reason written next to it, either in its info string
(```` ```bash skip="needs Docker and a GPU" ````) or in a comment on the line before the fence
(``<!-- readme-test: skip: needs Docker and a GPU -->``, which GitHub does not show).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
RUNNABLE = {"bash", "sh", "shell", "console", "python", "py"}
SKIP_COMMENT = re.compile(r"<!--\s*readme-test:\s*skip:\s*(?P<reason>.+?)\s*-->")
SKIP_INFO = re.compile(r"""\bskip=(?P<quote>["'])(?P<reason>.+?)(?P=quote)""")


@dataclass(frozen=True)
class Example:
    language: str  # "bash" or "python"
    line: int  # 1-based line of the opening fence
    code: str
    skip: str | None  # the README's reason not to run it

    @property
    def name(self) -> str:
        return f"README.md:{self.line}:{self.language}"


def examples(path: Path) -> list[Example]:
    """Every fenced bash/python block of the Markdown file at ``path``, in order."""
    lines = path.read_text().splitlines()
    found = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i].strip())
        if not opening:
            i += 1
            continue
        fence, info = opening["fence"], opening["info"].strip()
        body = []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            body.append(lines[j])
            j += 1
        language = info.split()[0].lower() if info else ""
        if language in RUNNABLE:
            reason = SKIP_INFO.search(info)
            comment = SKIP_COMMENT.search(lines[i - 1]) if i > 0 else None
            skip = reason["reason"] if reason else comment["reason"] if comment else None
            found.append(Example("python" if language in ("python", "py") else "bash", i + 1,
                                 "\n".join(body) + "\n", skip))
        i = j + 1
    return found
