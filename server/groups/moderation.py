"""The ad rule's matcher: pure, no I/O. A message is an ad when it contains one of the
configured terms, letter by letter, with anything that is not a letter or digit allowed
between the letters. Matching undoes the usual disguises: full-width and other
compatibility forms (NFKC: `ｗｗｗ．` → `www.`), case (casefold), and characters inserted
between a term's letters (spaces, zero-width marks, punctuation, symbols: `加.微.信`,
`w-e-c-h-a-t`, `h.t.t.p://`), so `W W W . x . C O M` and `ｖｘ：` are caught. A term's own
punctuation must be there (`.com` needs its dot), so `welcome` is not `.com`."""

from __future__ import annotations

import functools
import re
import unicodedata

_SAME_AS = str.maketrans({"。": ".", "｡": ".", "：": ":", "／": "/"})
# what may be inserted between a term's characters: anything but a letter or a digit
_BETWEEN = r"[\W_]*"


def normalize(text: str) -> str:
    return unicodedata.normalize("NFKC", text).translate(_SAME_AS).casefold()


@functools.lru_cache(maxsize=256)
def _pattern(term: str) -> re.Pattern[str] | None:
    """The term's characters in order, anything but letters and digits allowed between."""
    chars = [c for c in normalize(term) if not c.isspace()]
    return re.compile(_BETWEEN.join(re.escape(c) for c in chars)) if chars else None


def ad_found(text: str, terms: tuple[str, ...]) -> str | None:
    """The first configured term the text contains, or None."""
    plain = normalize(text)
    for term in terms:
        pattern = _pattern(term)
        if pattern is not None and pattern.search(plain):
            return term
    return None
