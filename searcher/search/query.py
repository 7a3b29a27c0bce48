"""The query language of the search box, parsed once: `parse_query(text, fields)` gives a
`ParsedQuery`, which every index searches by (`Index.search(text)` parses; so the CLI, the JSON
API, the page, MCP and the retrievers all read the same syntax).

    kittens mice              plain words: ranked by meaning (the encoder) and by BM25
    "nap in sunny windows"    a phrase: only documents holding these words in a row
    -owls  -"barn owl"        exclusions: no document holding the word or the phrase
    compil*                   a prefix: only documents holding a word that starts so
    cats OR "barn owl"        alternatives: documents holding at least one of them
    type:pdf  type:pdf,docx   a field (title, type, folder, year, modified, id, source, or a
    kind:animal  -type:pdf    metadata key the index has), compiled to the filter language
    year:2024  year:>=2020    (searcher/search/filters.py) and ANDed with the search's `where`;
    modified:>=2024-06-01     >=, >, <=, < compare; a,b is any of them; -field:value is not
    folder:/home/ann/docs     the folder or one below it
    title:zipfile             the title holds the word (title:"a phrase": the phrase)
    \\"  \\-  \\*  \\:  \\OR     a literal quote, minus, star, colon, OR

Phrases, words, prefixes and alternatives are matched on a document's stored title and text,
case and accents folded: a word as a whole word, a phrase as its words in a row with any
spaces or punctuation between ("e-mail" matches "e mail"). A minus inside a word (e-mail) or
before a number (-5, -2.5) is part of the word (before a code that starts with a digit, -12p13, it excludes); `word:thing` with a field the index does not have
(a URL, "note: ...") is plain words. Nothing raises: malformed syntax (an unclosed quote, a
field with no value, an unknown operator, a year that is not one) is read as plain words.

Standard library only (a thin client escapes plain text with it).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Collection

from searcher.search.filters import compile_where

__all__ = ["BUILTIN_FIELDS", "ParsedQuery", "escape", "field_names", "parse_query", "plain_query"]

# Fields every index can filter by, known or not; a metadata key is a field where the index has it.
BUILTIN_FIELDS = frozenset({"title", "type", "folder", "year", "modified", "id", "source"})
_TEXT_FIELDS = frozenset({"title", "type", "folder", "id", "source"})  # compared as text, never numbers
_WORD = re.compile(r"[^\W_]+")  # runs of letters and digits: how the keyword engines split text
_NAME = re.compile(r"([^\W\d][\w.-]*):")  # a field name and its colon, at the start of a term
_OPERATORS = {">=": "$gte", "<=": "$lte", ">": "$gt", "<": "$lt"}
_OPERATOR_CHARS = "<>=!~"
_ESCAPABLE = '"\\-*:'  # what a backslash makes literal (before anything else it is itself)
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_YEAR = re.compile(r"[0-9]{4}")
_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
_AFTER_ALL = "\uffff"  # sorts after every ISO date that starts with a given prefix


def fold(text: str) -> str:
    """Lower case, accents removed ("Café" -> "cafe"), as the keyword engines fold words."""
    text = text.lower()
    return text if text.isascii() else _COMBINING.sub("", unicodedata.normalize("NFKD", text))


@dataclass(frozen=True)
class ParsedQuery:
    """A search box's query, read once. `words`: the free words, what the encoder and BM25
    rank by (plain words, and the words of phrases, prefixes, alternatives and title terms);
    `phrases` (a one-word phrase is a whole word), `prefixes` and each group of `alternatives`
    (members written as in a query: word, "a phrase", pre*, title:word) must hold in a
    document; `excluded_words`, `excluded_phrases`, `excluded_prefixes` must not;
    `title_phrases` must hold in the title, `excluded_title_phrases` must not; `where`: the
    field filters, in the filter language. `plain`: read as plain words (syntax=False)."""

    text: str
    words: tuple[str, ...] = ()
    phrases: tuple[str, ...] = ()
    excluded_words: tuple[str, ...] = ()
    excluded_phrases: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    excluded_prefixes: tuple[str, ...] = ()
    alternatives: tuple[tuple[str, ...], ...] = ()
    title_phrases: tuple[str, ...] = ()
    excluded_title_phrases: tuple[str, ...] = ()
    where: dict | None = field(default=None, hash=False)
    plain: bool = False

    @property
    def search_text(self) -> str:
        """What the encoder and BM25 rank by: the free words; the text itself where it has
        none (`type:pdf`, `-owls`: nothing else to rank by)."""
        if self.plain:
            return self.text
        return " ".join(self.words) or self.text

    @property
    def constrained(self) -> bool:
        """Whether documents are held to words (phrases, exclusions, prefixes, alternatives, title terms)."""
        return bool(self._patterns[0] or self._patterns[1] or self._patterns[2])

    def passage_holds(self, text: str) -> bool:
        """Whether a passage holds every phrase of the query (what it should show: the words
        the document was required to hold, not only its nearest meaning)."""
        folded = fold(text or "")
        return all(p.found("", folded) for p in (_Pattern.of(phrase) for phrase in self.phrases) if p is not None)

    def required_words(self) -> list[str]:
        """The words every returned document holds (those of its phrases and title terms),
        folded: a document lacking any of them cannot pass, so an index may look only among
        the documents that hold the rarest (searcher/index/querying.py)."""
        return list(dict.fromkeys(fold(w) for items in (self.phrases, self.title_phrases)
                                  for item in items for w in _WORD.findall(item)))

    def loose_words(self) -> list[str]:
        """The free words that stand alone (not in a phrase, prefix, title term or group of
        alternatives, which are matched as written): the words typo tolerance may correct
        (searcher/search/spelling.py)."""
        held = {fold(w) for items in (self.phrases, self.prefixes, self.title_phrases)
                for item in items for w in _WORD.findall(item)}
        held |= {fold(w) for group in self.alternatives for member in group for w in _WORD.findall(member)}
        loose = (w for word in self.words for w in _WORD.findall(word))
        return list(dict.fromkeys(w for w in loose if fold(w) not in held))

    def corrected(self, corrections: dict[str, str], text: str) -> "ParsedQuery":
        """This query with its loose words replaced by `corrections` ({word: correction}),
        `text` the corrected query text; phrases, prefixes, exclusions and fields as they were."""
        if not corrections:
            return self
        folded = {fold(k): v for k, v in corrections.items()}

        def fixed(word: str) -> str:
            return _WORD.sub(lambda m: folded.get(fold(m.group()), m.group()), word)

        return replace(self, text=text, words=tuple(fixed(w) for w in self.words))

    def within(self, where: dict | None) -> dict | None:
        """The search's filter `where` ANDed with this query's field filters."""
        if self.where is None or where is None:
            return where if self.where is None else self.where
        return {"$and": [where, self.where]}

    def matches(self, title: str, text: str) -> bool:
        """Whether a document (its stored title and text) holds what the query requires and
        nothing it excludes."""
        if not self.constrained:
            return True
        must, must_not, groups = self._patterns
        folded = (fold(title or ""), fold(text or ""))
        return (all(p.found(*folded) for p in must) and not any(p.found(*folded) for p in must_not)
                and all(any(p.found(*folded) for p in group) for group in groups))

    @cached_property
    def _patterns(self) -> tuple[tuple["_Pattern", ...], tuple["_Pattern", ...], tuple[tuple["_Pattern", ...], ...]]:
        """(must hold, must not hold, groups of which one must hold), from the fields above."""
        def made(items, prefix=False, title=False):
            return [p for p in (_Pattern.of(s, prefix, title) for s in items) if p is not None]

        must = made(self.phrases) + made(self.prefixes, prefix=True) + made(self.title_phrases, title=True)
        must_not = (made(self.excluded_words) + made(self.excluded_phrases) + made(self.excluded_prefixes, prefix=True)
                    + made(self.excluded_title_phrases, title=True))
        groups = []
        for group in self.alternatives:
            patterns = [p for p in (_member_pattern(m) for m in group) if p is not None]
            if len(patterns) == len(group) and patterns:  # a member that cannot be matched holds nothing back
                groups.append(tuple(patterns))
        return tuple(must), tuple(must_not), tuple(groups)


@dataclass(frozen=True)
class _Pattern:
    """Words in a row (the last one a prefix, for `pre*`), found in the title (and the text)."""

    regex: re.Pattern
    title_only: bool
    needle: str  # its longest word: text without it cannot match (a fast test first)

    @staticmethod
    def of(text: str, prefix: bool = False, title_only: bool = False) -> "_Pattern | None":
        words = _WORD.findall(fold(text))
        if not words:
            return None  # punctuation only: nothing a document's words could hold
        body = r"[\W_]+".join(re.escape(w) for w in words)
        regex = re.compile(r"(?<![^\W_])" + body + ("" if prefix else r"(?![^\W_])"))
        return _Pattern(regex, title_only, max(words, key=len))

    def found(self, title: str, text: str) -> bool:
        """Whether the (folded) title or text holds it."""
        return bool((self.needle in title and self.regex.search(title))
                    or (not self.title_only and self.needle in text and self.regex.search(text)))


def _member_pattern(member: str) -> _Pattern | None:
    """An alternative as `parse_query` writes it (word, "a phrase", pre*, title:word) as a pattern."""
    terms = _scan(member, frozenset({"title"}))
    if len(terms) != 1:
        return None
    term = terms[0]
    if term.kind == "prefix":
        return _Pattern.of(term.text, prefix=True)
    if term.kind == "field" and term.name == "title" and not term.op:
        return _Pattern.of(term.values[0], title_only=True)
    return _Pattern.of(term.text) if term.kind in ("word", "phrase") else None


@dataclass(frozen=True)
class _Term:
    """One term as scanned: kind "word", "phrase", "prefix", "field", "or", or "plain" (syntax
    read as plain words); `text`: its words (unescaped); a field's name, operator and values."""

    kind: str
    text: str
    negated: bool = False
    name: str = ""
    op: str = ""
    values: tuple[str, ...] = ()
    quoted: bool = False


def _unescape(raw: str) -> str:
    r"""A bare token's text: `\` before a syntax character is dropped; `\OR` is the word OR."""
    if raw == "\\OR":
        return "OR"
    out, i = [], 0
    while i < len(raw):
        if raw[i] == "\\" and i + 1 < len(raw) and raw[i + 1] in _ESCAPABLE:
            i += 1
        out.append(raw[i])
        i += 1
    return "".join(out)


def _bare_end(text: str, i: int) -> int:
    """Where the bare token starting at `i` ends (the next whitespace; an escape takes its character along)."""
    n = len(text)
    while i < n and not text[i].isspace():
        i += 2 if text[i] == "\\" and i + 1 < n and text[i + 1] in _ESCAPABLE else 1
    return i


def _quoted(text: str, i: int) -> tuple[str, int] | None:
    """(the unescaped text between the quote at `i` and its closing quote, the index after
    it), or None when the quote is never closed."""
    out, j, n = [], i + 1, len(text)
    while j < n:
        c = text[j]
        if c == "\\" and j + 1 < n and text[j + 1] in _ESCAPABLE:
            out.append(text[j + 1])
            j += 2
        elif c == '"':
            return "".join(out), j + 1
        else:
            out.append(c)
            j += 1
    return None


def _known(name: str, fields: Collection[str]) -> str | None:
    """The field a `name:` names (built-in names in any case), or None where it is no field."""
    if name.lower() in BUILTIN_FIELDS:
        return name.lower()
    key = name[len("metadata."):] if name.startswith("metadata.") else name
    return name if key and (name in fields or key in fields) else None


def _scan(text: str, fields: Collection[str]) -> list[_Term]:
    """The text's terms, in order; whatever is malformed is a "plain" term of its text."""
    terms: list[_Term] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        start = i
        negated = text[i] == "-" and i + 1 < n and (text[i + 1] == '"' or text[i + 1].isalpha()
                                                   or text[i + 1] == "_" or _code_after(text, i + 1))
        if negated:
            i += 1
        named = _NAME.match(text, i)
        name = _known(named.group(1), fields) if named else None
        if name is not None:
            term, i = _field_term(text, start, named.end(), name, negated)
            if term is None:  # an unclosed quote in the value: the rest is plain words
                terms.extend(_Term("plain", _unescape(w)) for w in text[start:].split())
                break
            terms.append(term)
        elif text[i] == '"':
            found = _quoted(text, i)
            if found is None:  # an unclosed quote: the rest is plain words
                terms.extend(_Term("plain", _unescape(w)) for w in text[start:].split())
                break
            phrase, i = found
            if i < n and not text[i].isspace():  # "a"b: a quote inside a token is literal
                i = _bare_end(text, i)
                terms.append(_Term("plain", _unescape(text[start:i])))
            else:
                terms.append(_Term("phrase", " ".join(phrase.split()), negated))
        else:
            i = _bare_end(text, i)
            raw = text[start:i]
            body = raw[1:] if negated else raw
            if body == "OR" and not negated:
                terms.append(_Term("or", "OR"))
            elif body.endswith("*") and not body.endswith("\\*") and _WORD.search(body[:-1]):
                terms.append(_Term("prefix", _unescape(body[:-1]), negated))
            else:
                terms.append(_Term("word", _unescape(body), negated))
    return terms


def _code_after(text: str, i: int) -> bool:
    """Whether the token at `i` starts with a digit and holds a letter (12p13, 4fold, 3d): a
    code, which a minus excludes; a number (5, 2.5, 10%) keeps its minus as a sign."""
    return text[i].isdigit() and any(c.isalpha() for c in text[i:_bare_end(text, i)])


def _field_term(text: str, start: int, i: int, name: str, negated: bool) -> tuple[_Term | None, int]:
    """The field term whose value starts at `i` (after `name:`), and where it ends; a
    malformed one is a plain term of its text; None for an unclosed quote."""
    n = len(text)
    op = next((symbol for symbol in _OPERATORS if text.startswith(symbol, i)), "")
    j = i + len(op)
    if j < n and text[j] == '"':
        found = _quoted(text, j)
        if found is None:
            return None, n
        value, end = found
        if end < n and not text[end].isspace():
            end = _bare_end(text, end)
            return _Term("plain", _unescape(text[start:end])), end
        values, quoted = (" ".join(value.split()),), True
    else:
        end = _bare_end(text, j)
        raw = _unescape(text[j:end])
        values = tuple(v for v in raw.split(",") if v) if not op else (raw,)
        quoted = False
        if j == end or (j < n and text[j] in _OPERATOR_CHARS) or (op and "," in raw):
            values = ()  # no value, an unknown operator, or a list compared
    if not values or not all(v.strip() for v in values) or (name == "year" and not all(_YEAR.fullmatch(v)
                                                                                       for v in values)):
        return _Term("plain", _unescape(text[start:end])), end
    return _Term("field", " ".join(values), negated, name, op, values, quoted), end


def _syntax(term: _Term) -> str:
    """A text term written back as a query (an alternative's member)."""
    if term.kind == "prefix":
        return _escape_word(term.text) + "*"
    if term.kind == "field":
        return "title:" + _quote(term.values[0])
    return _escape_word(term.text) if term.kind == "word" and " " not in term.text else _quote(term.text)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _escape_word(word: str) -> str:
    return escape(word)


def _number(value: str):
    """A value as a number where it reads as one, else the text."""
    if _NUMBER.fullmatch(value):
        return float(value) if "." in value else int(value)
    return value


def _condition(term: _Term) -> dict:
    """A field term (not title's without an operator) in the filter language."""
    name, op, values = term.name, term.op, term.values
    if name == "year":  # the year of `modified` (ISO 8601 text): a range of it
        first, last = (lambda y: f"{int(y):04d}"), (lambda y: f"{int(y):04d}{_AFTER_ALL}")
        if op:
            bound = {">=": ("$gte", first), ">": ("$gt", last), "<": ("$lt", first), "<=": ("$lt", last)}[op]
            cond = {"modified": {bound[0]: bound[1](values[0])}}
        else:
            ranges = [{"modified": {"$gte": first(y), "$lt": last(y)}} for y in values]
            cond = ranges[0] if len(ranges) == 1 else {"$or": ranges}
    elif op:
        value = values[0] if name in _TEXT_FIELDS or term.quoted else _number(values[0])
        cond = {name: {_OPERATORS[op]: value}}
    elif name == "folder":
        unders = [{"folder": {"$under": v}} for v in values]
        cond = unders[0] if len(unders) == 1 else {"$or": unders}
    elif name == "modified":  # a date (or its start: 2024-06) covers the times within it
        ranges = [{"modified": {"$gte": v, "$lt": v + _AFTER_ALL}} for v in values]
        cond = ranges[0] if len(ranges) == 1 else {"$or": ranges}
    else:
        if name == "type":
            values = tuple(v.lower().lstrip(".") for v in values)
        if name in _TEXT_FIELDS or term.quoted:
            options = list(dict.fromkeys(values))
        else:  # 10 matches the number or the text "10"
            options = list(dict.fromkeys(x for v in values for x in ((_number(v), v) if _number(v) != v else (v,))))
        cond = {name: options[0] if len(options) == 1 else {"$in": options}}
    return {"$not": cond} if term.negated else cond


def _is_text(term: _Term) -> bool:
    """A term matched against a document's words (not a filter on its fields)."""
    return term.kind in ("word", "phrase", "prefix") or (term.kind == "field" and term.name == "title" and not term.op)


def parse_query(text: str, fields: Collection[str] | None = None) -> ParsedQuery:
    """The query in `text`. `fields`: the metadata keys the index has (anything `in` works on);
    the built-in fields (BUILTIN_FIELDS) are always fields. Never raises on a string: what
    does not parse is read as plain words."""
    if not isinstance(text, str):
        raise TypeError(f"the query must be a string, not {type(text).__name__}")
    terms = _scan(text, fields or ())
    groups: list[list[_Term]] = []
    k = 0
    while k < len(terms):  # a OR b OR c: one group, of terms that can be alternatives
        group = [terms[k]]
        while (k + 2 < len(terms) and terms[k + 1].kind == "or" and _alternative(group[-1])
               and _alternative(terms[k + 2])):
            group.append(terms[k + 2])
            k += 2
        groups.append(group)
        k += 1
    out: dict[str, list] = {name: [] for name in (
        "words", "phrases", "excluded_words", "excluded_phrases", "prefixes", "excluded_prefixes",
        "alternatives", "title_phrases", "excluded_title_phrases")}
    conditions: list[dict] = []
    for group in groups:
        if len(group) > 1 and all(_is_text(t) for t in group):
            out["alternatives"].append(tuple(dict.fromkeys(_syntax(t) for t in group)))
            out["words"].extend(w for t in group for w in t.text.split())
        elif len(group) > 1 and not any(_is_text(t) for t in group):  # type:pdf OR type:docx
            conditions.append({"$or": [_condition(t) for t in group]})
        else:  # a lone term, or alternatives of fields and words together: each on its own
            for term in group:
                _add(term, out, conditions)
    where = None
    if conditions:
        where = conditions[0] if len(conditions) == 1 else {"$and": conditions}
        try:
            compile_where(where)
        except ValueError:  # past the filter language's limits: the fields are read as words
            return parse_query(escape(text), fields)
    lists = {name: tuple(items if name == "words" else dict.fromkeys(items)) for name, items in out.items()}
    return ParsedQuery(text, **lists, where=where)


def _alternative(term: _Term) -> bool:
    return not term.negated and term.kind in ("word", "phrase", "prefix", "field")


def _add(term: _Term, out: dict[str, list], conditions: list[dict]) -> None:
    """One term that stands on its own, into the lists of `parse_query`."""
    kind, negated = term.kind, term.negated
    if kind in ("plain", "or"):
        out["words"].extend(term.text.split())
    elif kind == "word":
        out["excluded_words" if negated else "words"].append(term.text)
    elif kind == "phrase":
        if not _WORD.search(term.text):  # "!!!": no words to hold; its text is plain words
            if not negated and term.text:
                out["words"].extend(term.text.split())
        elif negated:
            out["excluded_phrases"].append(term.text)
        else:
            out["phrases"].append(term.text)
            out["words"].extend(term.text.split())
    elif kind == "prefix":
        out["excluded_prefixes" if negated else "prefixes"].append(term.text)
        if not negated:
            out["words"].append(term.text)
    elif term.name == "title" and not term.op:
        if len(term.values) > 1 and not negated:  # title:a,b holds either
            out["alternatives"].append(tuple(dict.fromkeys("title:" + _quote(v) for v in term.values)))
        else:
            out["excluded_title_phrases" if negated else "title_phrases"].extend(term.values)
        if not negated:
            out["words"].extend(w for v in term.values for w in v.split())
    else:
        conditions.append(_condition(term))


def plain_query(text: str) -> ParsedQuery:
    """`text` searched as plain words, its syntax not read (`syntax=False`)."""
    if not isinstance(text, str):
        raise TypeError(f"the query must be a string, not {type(text).__name__}")
    return ParsedQuery(text, tuple(text.split()), plain=True)


def escape(text: str) -> str:
    """`text` with its syntax made literal: parse_query(escape(t)) has t's words and nothing else."""
    escaped = re.sub(r'[\\"*:-]', lambda m: "\\" + m.group(), text)
    return re.sub(r"(?<!\S)OR(?!\S)", r"\\OR", escaped)


def field_names(text: str) -> set[str]:
    """The names written as `name:` at the start of a term: the fields a query may filter by
    (so an index looks up only these among its metadata keys)."""
    return {m.group(1) for m in re.finditer(r"(?<!\S)-?([^\W\d][\w.-]*):", text)}
