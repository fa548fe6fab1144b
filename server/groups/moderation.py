"""The ad rule's matcher: pure, no I/O. A message is an ad when it contains one of the
configured terms, letter by letter, with a little of anything that is not a letter or
digit allowed between the letters. Matching undoes the usual disguises: full-width and other
compatibility forms (NFKC: `ｗｗｗ．` → `www.`), case (casefold), and up to three characters
inserted between two of a term's letters (spaces, zero-width marks, punctuation, symbols:
`加.微.信`, `w-e-c-h-a-t`, `h.t.t.p://`), so `W W W . x . C O M` and `ｖｘ：` are caught. A
term's own punctuation must be there (`.com` needs its dot), a sentence's end does not
split a term with Latin letters (`参加！VIP` is not `加v`), and a term that starts or ends
with a Latin letter is a whole word there (`. Come back` is not `.com`)."""

from __future__ import annotations

import functools
import re
import unicodedata

_SAME_AS = str.maketrans({"｡": "。", "．": ".", "：": ":", "／": "/"})
# What may be inserted between two of a term's characters: up to 3 of anything but a letter
# or a digit (a disguise inserts one or two: `加 微 信`, `h.t.t.p`); in a term with Latin
# letters, not what ends a sentence, which there joins two sentences rather than splitting a
# word (`参加！VIP` is not `加v`, `we? Chat` is not `wechat`; `加。微。信` is still `加微信`).
# Bounded, so a run of punctuation costs linear time.
_BETWEEN = r"[\W_]{0,3}"
_BETWEEN_LATIN = r"(?:[^\w。！？!?；;\n]|_){0,3}"
_LATIN = re.compile(r"[a-z0-9]")


def normalize(text: str) -> str:
    return unicodedata.normalize("NFKC", text).translate(_SAME_AS).casefold()


@functools.lru_cache(maxsize=256)
def _pattern(term: str) -> re.Pattern[str] | None:
    """The term's characters in order, anything but letters and digits allowed between."""
    chars = [c for c in normalize(term) if not c.isspace()]
    if not chars:
        return None
    latin = any(_LATIN.fullmatch(c) for c in chars)
    body = (_BETWEEN_LATIN if latin else _BETWEEN).join(re.escape(c) for c in chars)
    # a Latin term is a word: `.com` is not in `. Come back`, `wechat` not in `wechatty`
    head = "(?<![a-z0-9])" if _LATIN.fullmatch(chars[0]) else ""
    tail = "(?![a-z0-9])" if _LATIN.fullmatch(chars[-1]) else ""
    return re.compile(head + body + tail)


def ad_found(text: str, terms: tuple[str, ...]) -> str | None:
    """The first configured term the text contains, or None."""
    plain = normalize(text)
    for term in terms:
        pattern = _pattern(term)
        if pattern is not None and pattern.search(plain):
            return term
    return None
