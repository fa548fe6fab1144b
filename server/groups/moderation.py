"""The ad rule's matcher: pure, no I/O. A message is an ad when, after both are
normalized the same way, it contains one of the configured terms. Normalizing undoes
the usual disguises: full-width and other compatibility forms (NFKC: `ｗｗｗ．` → `www.`),
case (casefold), and characters inserted between letters (spaces, zero-width marks,
fillers such as `-_*·|`), so `W W W . x . C O M` and `ｖｘ：` are caught."""

from __future__ import annotations

import unicodedata

# dropped before matching: they are how a term is split up to slip through
_FILLERS = frozenset("-_*~·•|,，、'\"`^+=#")
_ZERO_WIDTH = frozenset("\u200b\u200c\u200d\u2060\ufeff\u00ad")
_SAME_AS = str.maketrans({"。": ".", "｡": ".", "：": ":", "／": "/"})


def normalize(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).translate(_SAME_AS).casefold()
    return "".join(c for c in folded
                   if not c.isspace() and c not in _FILLERS and c not in _ZERO_WIDTH)


def ad_found(text: str, terms: tuple[str, ...]) -> str | None:
    """The first configured term the text contains, or None."""
    plain = normalize(text)
    for term in terms:
        if normalize(term) and normalize(term) in plain:
            return term
    return None
