"""Forgiving title lookup: a typed title (any case, accents, punctuation, typos, with or without
the year, "Matrix, The" or "The Matrix") → one movie, or a clear error.

Every title is reduced to a *key*: accents and case dropped, ``&`` read as ``and``, punctuation
turned into spaces, a release year ``(1995)`` split off, and the leading or trailing article
removed (``"Matrix, The (1999)"``, ``"The Matrix"`` and ``"matrix"`` all have the key
``"matrix"``). A title with a parenthesised alternative name (``"City of Lost Children, The
(Cité des enfants perdus, La)"``) also gets the key of its main name.

:meth:`TitleIndex.match` resolves a query in this order:

1. an exact key match (filtered by the year when the query gives one) — one movie wins;
   several movies that differ (remakes with other years) raise :class:`AmbiguousTitle`;
   duplicate entries of the *same* title and year resolve to the most-rated one;
2. otherwise the best fuzzy matches (RapidFuzz; typo-tolerant, numbers must agree so that
   "Toy Story 3" never becomes "Toy Story 2"), with the same rules for ties;
3. otherwise titles containing the query as whole words ("romeo and juliet" → "William
   Shakespeare's Romeo and Juliet", "star wars" → the "Star Wars: Episode …" films): one film
   is a match, several are ambiguous (the :data:`MAX_CANDIDATES` most rated are listed);
4. otherwise :class:`UnknownMovie` listing the closest titles as suggestions.

A movie found without a year must also be the series' obvious one: when titles that continue
its name with a subtitle ("Lord of the Rings: The Fellowship of the Ring" after "Lord of the
Rings") have more training ratings than it, the query names a series, not a film, and
:class:`AmbiguousTitle` lists them all ("lord of the rings" never silently means the 1978
film). Numbered sequels do not count ("Toy Story" stays Toy Story (1995): "Toy Story 2" is
typed with its number).

:meth:`TitleIndex.search` serves incremental search: exact, then prefix, then substring matches
(each group most-rated first), then fuzzy matches to fill the list.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import numpy as np
from rapidfuzz import fuzz, process
from rapidfuzz.distance import OSA

from aerec.recommend.errors import AmbiguousTitle, UnknownMovie

#: Articles moved or dropped when building keys ("Matrix, The" ≡ "The Matrix" ≡ "Matrix").
ARTICLES = (
    "the", "a", "an", "la", "le", "les", "il", "el", "los", "las", "der", "die", "das", "det",
    "den", "lo", "gli", "un", "une", "una",
)
#: Least fuzzy similarity (0–100) for a typo'd query to be accepted as a match.
FUZZY_CUTOFF = 80.0
#: Fuzzy matching needs at least this many characters in the query key (else exact only).
FUZZY_MIN_LENGTH = 4
#: Most titles a partial (contained) match may list as ambiguous candidates.
MAX_CANDIDATES = 10
#: Number of suggestions attached to :class:`UnknownMovie`.
SUGGESTIONS = 5

_YEAR_SUFFIX = re.compile(r"\s*[\(\[]\s*(\d{4})\s*[\)\]]\s*$")
_BARE_YEAR_SUFFIX = re.compile(r"^(.*\S)\s+(\d{4})$")
_PARENS = re.compile(r"\([^()]*\)|\[[^\[\]]*\]")
_NON_ALNUM = re.compile(r"[^0-9a-z]+")
_TRAILING_ARTICLE = re.compile(r",\s*(" + "|".join(ARTICLES) + r")\s*$")
_LEADING_ARTICLE = re.compile(r"^(" + "|".join(ARTICLES) + r")\s+(?=\S)")
_DIGITS = re.compile(r"\d+")
#: How a numbered sequel's key goes on after the series' name: "2", "ii the wrath of khan",
#: "part ii", "chapter 3 ...".
_SEQUEL_NUMBER = re.compile(r"^(?:part |chapter |episode |vol |volume )?(?:\d+|[ivx]+)(?: |$)")


def fold(text: str) -> str:
    """Case- and accent-free form of ``text``: NFKD, combining marks dropped, casefolded."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def split_year(title: str) -> tuple[str, int | None]:
    """``"Toy Story (1995)"`` → ``("Toy Story", 1995)``; no year → ``(title, None)``."""
    m = _YEAR_SUFFIX.search(title)
    if m and 1800 <= int(m.group(1)) <= 2100:
        return title[: m.start()], int(m.group(1))
    return title, None


def _words(text: str) -> str:
    """Folded text with ``&`` read as "and" and punctuation as spaces, single-spaced."""
    text = fold(text).replace("&", " and ").replace("'", "").replace("\u2019", "")
    return " ".join(_NON_ALNUM.sub(" ", text).split())


def _drop_articles(phrase: str) -> str:
    """Drop one trailing ``, The`` (before any parenthesis) and one leading article."""
    phrase = fold(phrase).strip()
    phrase = _TRAILING_ARTICLE.sub("", phrase)
    return _LEADING_ARTICLE.sub("", phrase)


def _main_and_alternatives(name: str) -> list[str]:
    """Title variants worth indexing: the whole name, the name without parentheses and each
    parenthesised alternative title (``"Shanghai Triad (Yao a yao yao dao waipo qiao)"``)."""
    variants = [name]
    main = _PARENS.sub(" ", name).strip()
    if main and main != name:
        variants.append(main)
        for part in _PARENS.findall(name):
            inner = part[1:-1].strip()
            if len(inner) >= 4 and not inner.isdigit() and not inner.lower().startswith("a.k.a"):
                variants.append(inner)
            elif inner.lower().startswith("a.k.a"):
                variants.append(inner[5:].strip(" .:"))
    return variants


def _with_leading_article(name: str) -> str:
    """``"Matrix, The"`` → ``"the Matrix"`` (folded); other names unchanged (folded)."""
    folded = fold(name).strip()
    paren = re.search(r"\s*\([^()]*\)\s*$", folded)
    head, tail = (folded[: paren.start()], folded[paren.start():]) if paren else (folded, "")
    m = _TRAILING_ARTICLE.search(head)
    if m:
        head = f"{m.group(1)} {head[: m.start()]}"
    return head + tail


def title_key(title: str) -> str:
    """The comparison key of a title without its year: ``"Matrix, The"`` → ``"matrix"``."""
    # a trailing article may sit before a parenthesised alternative title
    name = title.strip()
    paren = re.search(r"\s*\([^()]*\)\s*$", name)
    if paren and _TRAILING_ARTICLE.search(fold(name[: paren.start()])):
        name = name[: paren.start()]
    return _words(_drop_articles(name))


def display_title(title: str, year: int | None) -> str:
    """``title`` with ``(year)`` appended unless it already ends with it."""
    if year and not title.rstrip().endswith(f"({year})"):
        return f"{title} ({year})"
    return title


def _numbers(key: str) -> tuple[str, ...]:
    return tuple(_DIGITS.findall(key))


class TitleIndex:
    """Title lookup over a model's movies (columns ``0 … n_movies-1``).

    ``titles`` list of ``n_movies`` str, ``years`` int ``(n_movies,)`` (0 = unknown; a year in
    the title text is used when the array has none), ``movie_ids`` int64 ``(n_movies,)`` raw ids,
    ``popularity`` ``(n_movies,)`` (training ratings per movie) orders search results and breaks
    ties between duplicate entries.
    """

    def __init__(
        self,
        titles: Sequence[str],
        years: np.ndarray,
        movie_ids: np.ndarray,
        popularity: np.ndarray | None = None,
    ) -> None:
        n = len(titles)
        self.titles = [str(t) for t in titles]
        self.movie_ids = np.asarray(movie_ids, dtype=np.int64)
        years = np.asarray(years, dtype=np.int64).copy()
        self.popularity = (
            np.zeros(n, np.int64) if popularity is None else np.asarray(popularity, np.int64)
        )
        alias_keys: list[str] = []
        alias_cols: list[int] = []
        self.full_forms: list[str] = []  # folded title with the year cut, articles kept
        for col, title in enumerate(self.titles):
            name, title_year = split_year(title)
            if years[col] <= 0 and title_year is not None:
                years[col] = title_year
            self.full_forms.append(_words(_with_leading_article(name)))
            seen = set()
            variants = [title_key(v) for v in _main_and_alternatives(name)]
            variants.append(self.full_forms[-1])  # with its article, for typos in "the"
            for key in variants:
                if key and key not in seen:
                    seen.add(key)
                    alias_keys.append(key)
                    alias_cols.append(col)
        self.years = years
        self.alias_keys = alias_keys
        self.alias_cols = np.asarray(alias_cols, dtype=np.int64)
        self.keys = [title_key(split_year(t)[0]) for t in self.titles]
        self._exact: dict[str, list[int]] = {}
        for key, col in zip(alias_keys, alias_cols):
            bucket = self._exact.setdefault(key, [])
            if col not in bucket:
                bucket.append(col)
        self._numbers = [_numbers(k) for k in alias_keys]

    # ---------------------------------------------------------------------- description
    def year_of(self, col: int) -> int | None:
        year = int(self.years[col])
        return year if year > 0 else None

    def describe(self, col: int) -> dict:
        """``{"movie_id", "title", "year"}`` of one column."""
        return {
            "movie_id": int(self.movie_ids[col]),
            "title": self.titles[col],
            "year": self.year_of(col),
        }

    # ---------------------------------------------------------------------- matching
    def match(self, query: str) -> int:
        """The column of the movie ``query`` names (see the module docstring).

        Raises :class:`AmbiguousTitle` (``.candidates``) or :class:`UnknownMovie`
        (``.suggestions``).
        """
        text = str(query).strip()
        if not text:
            raise UnknownMovie("empty movie title")
        name, year = split_year(text)
        key = title_key(name)
        found = self._match_key(text, key, year)
        if found is not None:
            return found if year is not None else self._not_a_series(text, found)
        bare = _BARE_YEAR_SUFFIX.match(name.strip()) if year is None else None
        if bare is not None and 1800 <= int(bare.group(2)) <= 2100:
            # "toy story 1995": the trailing number may be the year
            found = self._match_key(text, title_key(bare.group(1)), int(bare.group(2)))
            if found is not None:
                return found
        raise UnknownMovie(
            f"no movie titled {text!r} in this model", self.suggest(key, year)
        )

    def _match_key(self, text: str, key: str, year: int | None) -> int | None:
        if not key:
            return None
        exact = self._exact.get(key)
        if exact:
            chosen = self._choose(text, exact, year)
            if chosen is not None:
                return chosen
            if year is not None:  # the title exists, but not from that year
                # "lord of the rings (2001)": a film of the series from that year
                series = [c for c in self._continuations(key) if int(self.years[c]) == year]
                if series:
                    return self._choose(text, series, year)
                raise UnknownMovie(
                    f"no movie titled {text!r} in this model",
                    [self.describe(c) for c in self._by_popularity(exact)][:SUGGESTIONS],
                )
        if len(key) < FUZZY_MIN_LENGTH:
            return None
        hits = self._fuzzy(key)
        if not hits:
            return self._contained(text, key, year)
        best = hits[0][1]
        tied = list(dict.fromkeys(col for col, score in hits if score >= best - 1e-9))
        chosen = self._choose(text, tied, year)
        if chosen is None and year is not None:
            # a typo'd title with a year: the year decides among all close matches
            near = list(dict.fromkeys(col for col, _ in hits))
            chosen = self._choose(text, near, year)
        return chosen

    def _fuzzy(self, key: str) -> list[tuple[int, float]]:
        """Alias matches ``(column, score)`` at or above :data:`FUZZY_CUTOFF`, best first.

        The score is the better of the Indel ratio and the optimal-string-alignment similarity
        (which counts a swap of two letters as one edit), both computed natively over all
        aliases at once; candidates whose numbers differ from the query's are dropped.
        """
        scores = self._typo_scores(key)
        hits = np.flatnonzero(scores >= FUZZY_CUTOFF)
        wanted_numbers = _numbers(key)
        out = [
            (int(self.alias_cols[i]), float(scores[i]))
            for i in hits.tolist()
            if self._numbers[i] == wanted_numbers
        ]
        out.sort(key=lambda cs: (-cs[1], -int(self.popularity[cs[0]]), cs[0]))
        return out

    def _typo_scores(self, key: str) -> np.ndarray:
        """Typo-tolerant similarity 0–100 of ``key`` to every alias, float32 ``(n_aliases,)``."""
        ratio = process.cdist([key], self.alias_keys, scorer=fuzz.ratio, dtype=np.float32)[0]
        osa = process.cdist(
            [key], self.alias_keys, scorer=OSA.normalized_similarity, dtype=np.float32
        )[0]
        return np.maximum(ratio, 100.0 * osa)

    def _contained(self, text: str, key: str, year: int | None) -> int | None:
        """Titles that contain the query as whole words ("romeo and juliet" in "William
        Shakespeare's Romeo and Juliet"): one film is a match, a few are ambiguous."""
        if len(key) < 6:
            return None
        needle = f" {key} "
        cols = list(dict.fromkeys(
            int(self.alias_cols[i]) for i, alias in enumerate(self.alias_keys)
            if needle in f" {alias} "
        ))
        if year is not None:
            cols = [c for c in cols if int(self.years[c]) == year]
        if len(cols) > MAX_CANDIDATES:  # many films share these words: list the most rated
            top = self._by_popularity(cols)[:MAX_CANDIDATES]
            raise AmbiguousTitle(text, [self.describe(c) for c in self._by_year(top)], len(cols),
                                 example=self.describe(top[0]))
        if not cols:
            return None
        return self._choose(text, cols, year)

    def _not_a_series(self, text: str, col: int) -> int:
        """``col``, unless titles continuing its name with a subtitle (not a sequel number)
        are more rated than it — then the query names a series: :class:`AmbiguousTitle` with
        the film and its continuations (the most rated :data:`MAX_CANDIDATES`)."""
        key = self.keys[col]
        if not key:
            return col
        same = (self.titles[col], int(self.years[col]))
        found = [c for c in self._continuations(key, numbered=False)
                 if (self.titles[c], int(self.years[c])) != same]
        if not found or max(int(self.popularity[c]) for c in found) <= int(self.popularity[col]):
            return col
        top = self._by_popularity([col, *found])[:MAX_CANDIDATES]
        if col not in top:
            top[-1] = col  # the film the words name exactly is always listed
        raise AmbiguousTitle(text, [self.describe(c) for c in self._by_year(top)], len(found) + 1,
                             example=self.describe(top[0]))

    def _choose(self, text: str, cols: list[int], year: int | None) -> int | None:
        """One column from candidates: filter by year, then one distinct movie or ambiguity."""
        if year is not None:
            cols = [c for c in cols if int(self.years[c]) == year]
        if not cols:
            return None
        if len(cols) == 1:
            return cols[0]
        distinct = {(self.titles[c], int(self.years[c])) for c in cols}
        if len(distinct) == 1:  # duplicate entries of one film: take the most-rated
            return self._by_popularity(cols)[0]
        raise AmbiguousTitle(text, [self.describe(c) for c in self._by_year(cols)],
                             example=self.describe(self._by_popularity(cols)[0]))

    def _continuations(self, key: str, numbered: bool = True) -> list[int]:
        """Columns of the titles that continue ``key`` with more words ("lord of the rings" →
        "lord of the rings the two towers"), without numbered sequels unless ``numbered``."""
        prefix = key + " "
        found: dict[int, None] = {}
        for i, alias in enumerate(self.alias_keys):
            if alias.startswith(prefix) and (
                numbered or not _SEQUEL_NUMBER.match(alias[len(prefix):])
            ):
                found[int(self.alias_cols[i])] = None
        return list(found)

    def _by_popularity(self, cols: list[int]) -> list[int]:
        return sorted(cols, key=lambda c: (-int(self.popularity[c]), c))

    def _by_year(self, cols: list[int]) -> list[int]:
        return sorted(cols, key=lambda c: (int(self.years[c]), self.titles[c], c))

    def suggest(self, key: str, year: int | None = None, limit: int = SUGGESTIONS) -> list[dict]:
        """The closest titles to ``key`` (for error messages), best first.

        Ranked by the typo score against the whole title and against its first words (so a
        partial title finds the longer one), plus a word-set score; a matching year and
        popularity break ties.
        """
        if not key:
            return []
        scores = np.maximum(self._typo_scores(key), 0.95 * self._prefix_scores(key))
        token = process.cdist(
            [key], self.alias_keys, scorer=fuzz.token_set_ratio, dtype=np.float32
        )[0]
        scores = np.maximum(scores, 0.9 * token)
        if year is not None:
            scores = scores + 3.0 * (self.years[self.alias_cols] == year)
        order = np.lexsort((-self.popularity[self.alias_cols], -scores))
        cols: list[int] = []
        for i in order[: limit * 8].tolist():
            col = int(self.alias_cols[i])
            if col not in cols:
                cols.append(col)
            if len(cols) == limit:
                break
        return [self.describe(c) for c in cols]

    def _prefix_scores(self, key: str) -> np.ndarray:
        """Typo score of ``key`` against each alias cut to the key's length (prefix typos)."""
        n = len(key)
        prefixes = [a[:n] for a in self.alias_keys]
        ratio = process.cdist([key], prefixes, scorer=fuzz.ratio, dtype=np.float32)[0]
        osa = process.cdist(
            [key], prefixes, scorer=OSA.normalized_similarity, dtype=np.float32
        )[0]
        return np.maximum(ratio, 100.0 * osa)

    # ---------------------------------------------------------------------- search
    def search(self, query: str, limit: int = 10) -> list[int]:
        """Columns matching a partial query, for incremental search (module docstring)."""
        if limit < 1:
            return []
        name, year = split_year(str(query))
        words = _words(name)
        key = title_key(name)
        if not words:
            return []
        groups: list[list[int]] = [[], [], []]  # exact, prefix, substring
        for col, (full, k) in enumerate(zip(self.full_forms, self.keys)):
            if year is not None and int(self.years[col]) != year:
                continue
            if k == key or full == words:
                groups[0].append(col)
            elif full.startswith(words) or (key and k.startswith(key)):
                groups[1].append(col)
            elif words in full:
                groups[2].append(col)
        out: list[int] = []
        for group in groups:
            out.extend(self._by_popularity(group))
            if len(out) >= limit:
                return out[:limit]
        if len(key) >= FUZZY_MIN_LENGTH:  # typos: the query against each title's beginning
            chosen = set(out)
            scores = self._prefix_scores(key)
            hits = np.flatnonzero(scores >= FUZZY_CUTOFF)
            hits = hits[np.lexsort((-self.popularity[self.alias_cols[hits]], -scores[hits]))]
            for i in hits.tolist():
                col = int(self.alias_cols[i])
                if col in chosen or (year is not None and int(self.years[col]) != year):
                    continue
                chosen.add(col)
                out.append(col)
                if len(out) >= limit:
                    break
        return out[:limit]


__all__ = ["TitleIndex", "display_title", "fold", "split_year", "title_key"]
