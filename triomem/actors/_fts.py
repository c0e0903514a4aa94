"""Turning user text into a safe FTS5 query.

No user string can produce an FTS5 syntax error: the text is cut into word tokens (letters and
digits only), each token is double-quoted as an FTS5 string, and tokens are ORed. Function words
are dropped because they match unrelated memories and drown the strong lexical hits.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import apsw
import attrs

# The tokenizer memory_fts was created with (schema v1); statistics must stem the same way.
TOKENIZER = ("porter", ["unicode61", "remove_diacritics", "2"])

_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)

STOP_WORDS = frozenset(
    ["a", "about", "above", "after", "again", "against", "all", "am", "an", "and", "any", "are", "as", "at", "be", "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "could", "did", "do", "does", "doing", "down", "during", "each", "few", "for", "from", "further", "had", "has", "have", "having", "he", "her", "here", "hers", "herself", "him", "himself", "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself", "just", "me", "more", "most", "my", "myself", "no", "nor", "not", "now", "of", "off", "on", "once", "only", "or", "other", "our", "ours", "ourselves", "out", "over", "own", "same", "she", "should", "so", "some", "such", "than", "that", "the", "their", "theirs", "them", "themselves", "then", "there", "these", "they", "this", "those", "through", "to", "too", "under", "until", "up", "very", "was", "we", "were", "what", "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would", "you", "your", "yours", "yourself", "yourselves", "user", "users", "tell", "know", "remember", "recall", "anything", "something"]
)


def query_terms(text: str, *, max_terms: int = 32) -> tuple[str, ...]:
    """The searchable words of ``text``: letters and digits only, stop words dropped."""
    terms: dict[str, None] = {}
    for token in _TOKEN.findall(text.lower()):
        if token not in STOP_WORDS and len(terms) < max_terms:
            terms[token] = None
    return tuple(terms)


def match_expression(terms: tuple[str, ...]) -> str:
    """Every term as a quoted FTS5 string, ORed. Terms hold no quotes (see ``query_terms``)."""
    return " OR ".join(f'"{t}"' for t in terms)



@attrs.frozen
class Term:
    """A query word, the index term it stems to, its document frequency and IDF."""

    word: str
    stem: str
    docs: int
    idf: float


def _varint(data: bytes) -> int:
    """SQLite's big-endian base-128 varint at the start of ``data``."""
    value = 0
    for i, byte in enumerate(data[:9]):
        if i == 8:
            return (value << 8) | byte
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            break
    return value


def indexed_rows(conn: apsw.Connection) -> int:
    """How many rows memory_fts holds, in O(1): the first varint of FTS5's "averages" record
    (``memory_fts_data`` row 1). ``count(*)`` on a contentless table walks the whole index."""
    found = conn.execute("SELECT block FROM memory_fts_data WHERE id = 1").fetchall()
    block: Any = found[0][0] if found else None
    return _varint(bytes(block)) if block else 0


@attrs.define(eq=False)
class FrequencyCache:
    """Document frequencies already looked up, reused while the index has grown or shrunk by
    less than ``tolerance`` since (IDF is a logarithm: a 1% drift moves it by ~0.01).

    fts5vocab counts a term's documents by walking its doclist, so a common term costs
    O(documents) per lookup; recalls repeat the same words. Owned by one text leg and used
    only inside the store's reads, one at a time.
    """

    size: int = 4096
    tolerance: float = 0.01
    _entries: dict[str, tuple[int, int]] = attrs.field(factory=dict)  # stem -> (docs, rows)

    def get(self, stem: str, rows: int) -> int | None:
        entry = self._entries.get(stem)
        if entry is None or abs(rows - entry[1]) > self.tolerance * rows:
            return None
        return entry[0]

    def put(self, stem: str, docs: int, rows: int) -> None:
        if len(self._entries) >= self.size:
            self._entries.pop(next(iter(self._entries)))  # oldest first
        self._entries[stem] = (docs, rows)


def term_statistics(conn: apsw.Connection, words: Sequence[str],
                    cache: FrequencyCache | None = None) -> list[Term]:
    """Stem ``words`` exactly as FTS5 does and look up each stem's document frequency in the
    fts5vocab table; IDF as FTS5's bm25() computes it. One entry per distinct stem."""
    tokenize = conn.fts5_tokenizer(*TOKENIZER)
    stems: dict[str, str] = {}
    for word in words:
        token: Any
        for token in tokenize(word.encode("utf-8"), apsw.FTS5_TOKENIZE_QUERY, None):
            stems.setdefault(str(token[2]), word)  # (start, end, token, *synonyms)
    if not stems:
        return []
    total = indexed_rows(conn)
    docs: dict[str, int] = {}
    for stem in stems:  # one equality lookup each: fts5vocab does not push IN lists down
        known = cache.get(stem, total) if cache is not None else None
        if known is None:
            found = conn.execute("SELECT doc FROM temp.memory_fts_vocab WHERE term = ?",
                                 (stem,)).fetchall()
            known = int(found[0][0]) if found else 0  # type: ignore[arg-type]
            if cache is not None:
                cache.put(stem, known, total)
        docs[stem] = min(known, total)  # a cached count may predate a deletion
    return [Term(word, stem, docs[stem],
                 max(1e-6, math.log((total - docs[stem] + 0.5) / (docs[stem] + 0.5))))
            for stem, word in stems.items()]


def informative_terms(terms: Sequence[Term], floor: float) -> list[Term]:
    """The rarest terms a memory must contain to reach lexical strength ``floor``.

    Strength is a share of the query's total IDF. Take present terms rarest first until the
    IDF left outside is below ``floor`` of the total: a memory containing none of the taken
    terms cannot reach the floor, so it need not be scored at all. This keeps the FTS5 query
    off the common words that match half the corpus (the slow part at 100k memories).
    """
    total = sum(t.idf for t in terms)
    present = sorted((t for t in terms if t.docs > 0), key=lambda t: t.docs)
    outside = sum(t.idf for t in present)
    taken: list[Term] = []
    for term in present:
        if taken and outside < floor * total:
            break
        taken.append(term)
        outside -= term.idf
    return taken
