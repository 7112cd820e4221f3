"""Account names: names that look alike are one name.

The canonical form of a name is NFKC, then Unicode case folding, then NFKC again (the
composition Unicode calls NFKC_Casefold, less its removal of default-ignorable characters,
which the allowed alphabet refuses anyway). So `Carol`, `CAROL` and `Ｃａｒｏｌ` (full-width)
are all `carol`. A canonical name must be 1-128 characters of `a-z 0-9 . _ @ -`: whatever a
spelling looks like, what is stored and put in tokens is plain lower-case ASCII.

Accounts created before names were canonical may be stored under a spelling with capitals
(`Alice`); `STORED_NAME_RE` still admits those, and the store's name index finds them
under any spelling (see `RedisStore.stored_name`).
"""

from __future__ import annotations

import re
import unicodedata

from authsvc.errors import InvalidInput

MAX_NAME_LENGTH = 128
#: A spelling longer than this is refused before normalising it (NFKC can expand a
#: character up to 18 times: bound the work a hostile name can cause).
MAX_SPELLING_LENGTH = 4 * MAX_NAME_LENGTH
CANONICAL_NAME_RE = re.compile(r"[a-z0-9._@-]{1,128}")
#: Names as stored: canonical ones, and the capitalised ones of older accounts.
STORED_NAME_RE = re.compile(r"[A-Za-z0-9._@-]{1,128}")


def canonical_name(spelling: str) -> str:
    """The canonical form of an account name.

    Raises:
        InvalidInput: empty, too long, not valid Unicode (lone surrogates), or not 1-128
            characters of a-z 0-9 . _ @ - once normalised. The message never repeats the
            name (it may hold bytes a terminal or log must not see).
    """
    if not spelling:
        raise InvalidInput("username is required")
    if len(spelling) > MAX_SPELLING_LENGTH:
        raise InvalidInput("username is too long")
    try:
        spelling.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: not a Unicode string at all
        raise InvalidInput("username is not valid Unicode") from None
    name = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", spelling).casefold())
    if not CANONICAL_NAME_RE.fullmatch(name):
        raise InvalidInput(
            "username must be 1-128 characters of a-z 0-9 . _ @ - "
            "(letters compared without case, after NFKC normalisation)"
        )
    return name


def is_stored_name(name: str) -> bool:
    """True when `name` could be the stored name of an account (routing data in tokens)."""
    return STORED_NAME_RE.fullmatch(name) is not None
