"""What the full-text index holds and what a query asks for: pure functions, no I/O.

Python, not the database, decides what a word is, so SQLite and PostgreSQL index exactly
the same terms whatever their tokenizer or locale:

* text is folded: NFKC, casefold, Latin/Greek/Cyrillic diacritics removed (``é`` → ``e``);
* every Chinese, Japanese or Korean character (Han, Hiragana, Katakana, Hangul) is a term
  of its own, so a query of any length is found as adjacent characters (a phrase): ``中国``
  is found inside ``我爱中国人`` but not in ``中美国``;
* any other term is a run of letters and digits, matched by prefix (``web`` finds
  ``WebSockets``).

A query is split on white space into words; every word must match (AND). A word's terms
are a phrase; its last term is a prefix when it is not a CJK character. Nothing of the
query is ever passed to the database as syntax: :func:`fts5_query` and :func:`tsquery`
quote every term.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

_CJK = (
    "\u1100-\u11ff"  # Hangul Jamo
    "\u3005-\u3007"  # 々 〆 〇
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u3130-\u318f"  # Hangul compatibility Jamo
    "\u31f0-\u31ff"  # Katakana phonetic extensions
    "\u3400-\u4dbf"  # Han extension A
    "\u4e00-\u9fff"  # Han
    "\ua960-\ua97f"  # Hangul Jamo extended A
    "\uac00-\ud7ff"  # Hangul syllables, Jamo extended B
    "\uf900-\ufaff"  # Han compatibility
    "\U00020000-\U0003134f"  # Han extensions B-G
)
_TERM = re.compile(f"[{_CJK}]|[^\\W_{_CJK}]+")
_IS_CJK = re.compile(f"[{_CJK}]")
_DIACRITICS = re.compile("[\u0300-\u036f]+")
_MAY_HAVE_DIACRITICS = re.compile("[\u00c0-\u04ff\u1e00-\u1fff]")
"""Latin, Greek and Cyrillic letters (and combining marks): the only ones folding strips."""

MAX_TERM_CHARS = 64
"""Longer runs (a pasted hash, base64) are cut: both sides cut them the same way."""
MAX_TERMS = 16_383
"""Terms indexed per text at most (PostgreSQL's largest position)."""
MAX_QUERY_WORDS = 16


def fold(text: str) -> str:
    """``text`` as the index sees it: NFKC, casefolded, without Latin diacritics."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    if folded.isascii() or not _MAY_HAVE_DIACRITICS.search(folded):
        return folded
    stripped = _DIACRITICS.sub("", unicodedata.normalize("NFD", folded))
    return unicodedata.normalize("NFC", stripped)


def terms(text: str) -> list[str]:
    """The terms of ``text``, in order (the index's view of it)."""
    found = _TERM.findall(fold(text))
    return [term[:MAX_TERM_CHARS] for term in found[:MAX_TERMS]]


def index_text(text: str) -> str:
    """The terms of ``text`` separated by spaces: what a SQLite FTS5 row holds."""
    return " ".join(terms(text))


def tsvector_text(text: str) -> str:
    """The terms of ``text`` as PostgreSQL ``tsvector`` input (``'中':1 '国':2``): the
    database never parses the text itself."""
    positions: dict[str, list[int]] = {}
    for position, term in enumerate(terms(text), start=1):
        at = positions.get(term)
        if at is None:
            positions[term] = [position]
        elif len(at) < 256:  # PostgreSQL keeps 256 positions per lexeme
            at.append(position)
    return " ".join(f"{_quoted(term)}:{','.join(map(str, at))}" for term, at in positions.items())


@dataclass(frozen=True, slots=True)
class Word:
    """One word of a query: its terms must appear adjacent, in order; ``prefix``: the last
    term may be the start of a longer one."""

    terms: tuple[str, ...]
    prefix: bool


def parse_query(query: str) -> list[Word]:
    """The words of a query (empty when it has no letter or digit: it finds nothing)."""
    words: list[Word] = []
    for chunk in query.split()[:MAX_QUERY_WORDS]:
        found = tuple(terms(chunk))
        if found:
            words.append(Word(found, prefix=not _IS_CJK.fullmatch(found[-1])))
    return words


def fts5_query(words: list[Word]) -> str:
    """A SQLite FTS5 MATCH expression: quoted phrases joined by AND (``"中 国" AND "web"*``)."""
    return " AND ".join(
        '"' + " ".join(term.replace('"', '""') for term in word.terms) + '"' + "*" * word.prefix
        for word in words
    )


def tsquery(words: list[Word]) -> str:
    """A PostgreSQL ``tsquery`` input (``'中' <-> '国' & 'web':*``), every lexeme quoted."""
    return " & ".join(
        "("
        + " <-> ".join(
            _quoted(term) + (":*" if word.prefix and i == len(word.terms) - 1 else "")
            for i, term in enumerate(word.terms)
        )
        + ")"
        for word in words
    )


def _quoted(term: str) -> str:
    if "'" in term or "\\" in term:  # never from :data:`_TERM`; quoted anyway
        term = term.replace("\\", "\\\\").replace("'", "''")
    return f"'{term}'"


# -- snippets ----------------------------------------------------------------------------


SNIPPET_CHARS = 160


def snippet(text: str, words: list[Word], width: int = SNIPPET_CHARS) -> list[dict[str, object]]:
    """About ``width`` characters of ``text`` around its first match, as plain pieces:
    ``[{"text": …}, {"text": …, "match": True}, …]`` (every match in the window marked).

    Works on the original text (matched in its folded form, mapped back), so what is shown
    is what was written. Without a match, the start of the text, unmarked.
    """
    spans = list(_match_spans(text, words))
    if not spans:
        head = " ".join(text[: width * 2].split())
        return [{"text": head[:width] + ("…" if len(head) > width else "")}] if head else []
    first_start, first_end = spans[0]
    room = max(0, width - (first_end - first_start))
    start = max(0, first_start - room // 3)
    end = min(len(text), max(first_end, start + width))
    start = max(0, min(start, end - width))
    # Not in the middle of a word, when a space is near (CJK text has none: cut anywhere).
    if start > 0 and (space := text.find(" ", start, min(first_start, start + 16))) >= 0:
        start = space + 1
    if end < len(text) and (space := text.rfind(" ", max(first_end, end - 16), end)) >= 0:
        end = space
    pieces: list[dict[str, object]] = []
    cursor = start
    for span_start, span_end in spans:
        if span_start < start or span_end > end:
            continue
        if span_start > cursor:
            pieces.append({"text": text[cursor:span_start]})
        pieces.append({"text": text[span_start:span_end], "match": True})
        cursor = span_end
    if cursor < end:
        pieces.append({"text": text[cursor:end]})
    _squash_space(pieces)
    if start > 0:
        pieces[0]["text"] = "…" + str(pieces[0]["text"]).lstrip()
    if end < len(text):
        pieces[-1]["text"] = str(pieces[-1]["text"]).rstrip() + "…"
    return pieces


def _squash_space(pieces: list[dict[str, object]]) -> None:
    for piece in pieces:
        piece["text"] = re.sub(r"\s+", " ", str(piece["text"]))


def _match_spans(text: str, words: list[Word]) -> Iterator[tuple[int, int]]:
    """(start, end) in ``text`` of each occurrence of a query word, in order, not overlapping.

    Each word is a regular expression over the folded text (its terms, whole terms, with
    anything but a term between them, as the index sees adjacency), mapped back to ``text``.
    """
    folded = fold(text)
    if len(folded) == len(text):
        origin = None  # one folded character per character (nearly always): the same places
    else:
        folded, origin = _fold_mapped(text)
    hits: list[tuple[int, int]] = []
    for word in words:
        for match in _word_pattern(word).finditer(folded):
            hits.append(match.span())
    hits.sort()
    cursor = -1
    for start, end in hits:
        if start >= cursor:
            cursor = end
            if origin is None:
                yield start, end
            else:
                yield origin[start], origin[end - 1] + 1


_NOT_CJK_WORD = f"[^\\W_{_CJK}]"


def _word_pattern(word: Word) -> re.Pattern[str]:
    parts = []
    for position, term in enumerate(word.terms):
        if _IS_CJK.fullmatch(term):
            parts.append(re.escape(term))
            continue
        last = position == len(word.terms) - 1
        after = "" if (last and word.prefix) else f"(?!{_NOT_CJK_WORD})"
        parts.append(f"(?<!{_NOT_CJK_WORD}){re.escape(term)}{after}")
    return re.compile("[\\W_]*".join(parts))


def _fold_mapped(text: str) -> tuple[str, list[int]]:
    """``text`` folded a character at a time, and the index in ``text`` of each folded
    character (for the rare text whose folding changes its length)."""
    folded: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        piece = fold(char)
        folded.append(piece)
        origin.extend([index] * len(piece))
    return "".join(folded), origin
