"""The token file (--token-file): one token a line, with its rights, queues and rate (pure).

    TOKEN                                      an admin token (the file's original format)
    TOKEN RIGHTS[,RIGHTS] [queues=GLOB[,GLOB]] [rate=N/s]

Rights: `admin` (every right on every queue, queue creation and deletion), `publish`,
`consume` (receive, ack, nack, extend, streams and WebSocket subscriptions) and `read`
(list queues, stats, browse, one message, dead letters). `queues=` limits the other
rights to queues whose names match one of the globs (fnmatch: `*`, `?`, `[...]`);
`rate=` limits the token's requests per second (WebSocket frames count one each).

Errors name the line, never a field's text: a token written in the wrong place would
otherwise end up in the broker's log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from enum import StrEnum
from fnmatch import fnmatchcase


class Right(StrEnum):
    ADMIN = "admin"
    PUBLISH = "publish"
    CONSUME = "consume"
    READ = "read"


MAX_RATE = 1_000_000  # requests per second: far above what one broker serves
MAX_GLOBS = 100  # per token
# A queue name's characters (models.NAME_PATTERN) and fnmatch's *, ?, [, ], !.
_GLOB = re.compile(r"^[a-z0-9*?\[\]!-]{1,63}$")
_RATE = re.compile(r"^([1-9][0-9]{0,6})/s$")  # 7 digits at most: int() stays cheap
_NAMES = frozenset(r.value for r in Right)
_RIGHTS = ", ".join(r.value for r in Right)


@dataclass(frozen=True, slots=True)
class Grant:
    """What one token may do. `line` (its line in the file) names it in logs and limits."""

    rights: frozenset[Right]
    queues: tuple[str, ...] | None = None  # globs; None: every queue
    rate: int | None = None  # requests per second; None: unlimited
    line: int = 0
    file: str = ""  # which file of a --token-file directory ("": the one file)

    @property
    def where(self) -> str:
        """The token's place in the token file(s): how messages name it."""
        return (f"{self.file} " if self.file else "") + f"line {self.line}"

    @property
    def admin(self) -> bool:
        return Right.ADMIN in self.rights

    def covers(self, queue: str) -> bool:
        """Whether the token's rights apply to `queue` (admin: every queue)."""
        return self.admin or self.queues is None or any(
            fnmatchcase(queue, glob) for glob in self.queues)

    def allows(self, right: Right, queue: str | None = None) -> bool:
        """Whether the token holds `right` (admin holds them all) on `queue` (if one)."""
        if self.admin:
            return True
        return right in self.rights and (queue is None or self.covers(queue))


class TokenFileError(ValueError):
    def __init__(self, line: int, reason: str, file: str = "") -> None:
        super().__init__(f"{file + ' ' if file else ''}line {line}: {reason}")
        self.line = line
        self.reason = reason


def parse_tokens(text: str, file: str = "") -> dict[str, Grant]:
    """Every token of a token file with its grant; TokenFileError on the first bad line.

    Blank lines and lines whose first non-blank character is `#` are skipped.
    """
    return parse_token_files([(file, text)])


def parse_token_files(files: list[tuple[str, str]]) -> dict[str, Grant]:
    """The tokens of several files (name, text), e.g. the keys of a Kubernetes Secret
    mounted as a directory: one token may appear once in all of them."""
    grants: dict[str, Grant] = {}
    for file, text in files:
        for n, raw in enumerate(text.splitlines(), start=1):
            fields = raw.split()
            if not fields or fields[0].startswith("#"):
                continue
            token = fields[0]
            if token in grants:
                raise TokenFileError(n, f"repeats the token of {grants[token].where}", file)
            try:
                grants[token] = replace(parse_grant(fields[1:], n), file=file)
            except TokenFileError as e:
                raise TokenFileError(n, e.reason, file) from None
    return grants


def parse_grant(fields: list[str], line: int) -> Grant:
    """The grant written after a token (no fields: an admin token)."""
    if not fields:
        return Grant(frozenset({Right.ADMIN}), line=line)
    names = fields[0].split(",")
    if not all(name in _NAMES for name in names):
        raise TokenFileError(line, f"the field after the token must be rights ({_RIGHTS}) "
                                   "joined by commas")
    rights = frozenset(Right(name) for name in names)
    options: dict[str, str] = {}
    for field in fields[1:]:
        key, eq, value = field.partition("=")
        if not eq or key not in ("queues", "rate"):
            raise TokenFileError(line, "after the rights come only queues=GLOB[,GLOB] and "
                                       "rate=N/s")
        if key in options:
            raise TokenFileError(line, f"{key}= is given twice")
        options[key] = value
    return Grant(rights, _globs(options.get("queues"), rights, line),
                 _rate(options.get("rate"), line), line)


def _globs(value: str | None, rights: frozenset[Right], line: int) -> tuple[str, ...] | None:
    if value is None:
        return None
    if Right.ADMIN in rights:
        raise TokenFileError(line, "admin covers every queue: give the other rights to limit "
                                   "a token to some queues")
    globs = tuple(value.split(","))
    if len(globs) > MAX_GLOBS or not all(_GLOB.match(g) for g in globs):
        raise TokenFileError(line, f"queues= takes 1 to {MAX_GLOBS} globs joined by commas, "
                                   "each of queue-name characters (a-z, 0-9, -) and * ? [ ] !")
    return globs


def _rate(value: str | None, line: int) -> int | None:
    if value is None:
        return None
    m = _RATE.match(value)
    if m is None or int(m.group(1)) > MAX_RATE:
        raise TokenFileError(line, f"rate= takes N/s, N a whole number from 1 to {MAX_RATE}")
    return int(m.group(1))
