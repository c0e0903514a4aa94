"""Turning user text into a safe FTS5 query.

No user string can produce an FTS5 syntax error: the text is cut into word tokens (letters and
digits only), each token is double-quoted as an FTS5 string, and tokens are ORed. Function words
are dropped because they match unrelated memories and drown the strong lexical hits.
"""

from __future__ import annotations

import re

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


def fts_query(text: str, *, max_terms: int = 32) -> str | None:
    """An FTS5 MATCH expression for ``text``, or None when nothing searchable is left."""
    terms = query_terms(text, max_terms=max_terms)
    return match_expression(terms) if terms else None
