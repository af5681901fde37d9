"""Finding runs among thousands: a person's own tags and note on a run, and one query for the run
lists of the pages (pickers, Compare) that reads a bounded page of light rows, newest first, with
counts per status and per study for their filters. :class:`~mtl_core.store.store.RunStore` has
these methods.

Portable SQL only (the store is to run on PostgreSQL too): ``self.query`` and
``self.transaction()`` with ``?`` placeholders, ``LIKE`` with ``lower()`` on both sides, no
JSON functions. What SQL cannot say exactly (a word in the method or the tasks, which live in
the config's JSON) is narrowed with ``LIKE`` on the JSON text, then decided in Python on the rows
that pass. Note: SQLite's ``lower()`` folds ASCII letters only.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mtl_core.errors import ConfigError
from mtl_core.store.ids import check_run_id

NO_STUDY = "-"  # find_runs(study=NO_STUDY): runs that serve no study; the key of their count
LABEL_CHARS = 32  # one tag, at most
MAX_LABELS = 20  # tags on one run, at most
NOTE_CHARS = 4000
TEXT_CHARS = 200  # a search, at most
MAX_TERMS = 8
_LABEL = re.compile(r"[^\W_][\w .:+/#@-]*")
_TERMS = re.compile(r'"([^"]*)"|(\S+)')
_COLUMNS = ("r.id, r.name, r.status, r.created, r.updated, r.started, r.finished, r.step, r.total_steps, r.source,"
            " r.tags, r.labels, r.note")
_FACTS = 50_000  # runs whose method, tasks and baseline_of a store keeps in memory, at most


_ANNOTATE = {"note": "UPDATE runs SET note=? WHERE id=?", "labels": "UPDATE runs SET labels=? WHERE id=?"}


@dataclass(frozen=True)
class RunList:
    """A page of runs and what the filters around it show.

    ``rows``: at most the limit asked, newest first, each a light row (see :meth:`Listing.find_runs`);
    ``total``: how many runs match; ``statuses``: matching runs per status, the status filter left
    out (what each status choice would show); ``studies``: matching runs per study id they serve,
    :data:`NO_STUDY` for the others, the study and status filters left out (a study's runs, as its
    choice in a filter says); ``study_names``: every study's name by id, newest study first. The
    counts are empty when not asked for."""

    rows: list[dict[str, Any]]
    total: int
    statuses: dict[str, int] = field(default_factory=dict)
    studies: dict[str, int] = field(default_factory=dict)
    study_names: dict[str, str] = field(default_factory=dict)


def search_terms(text: str) -> list[str]:
    """The lower-cased terms of a search: words, or "quoted phrases"; each must match."""
    terms = [(a or b).strip().lower() for a, b in _TERMS.findall(str(text or "")[:TEXT_CHARS])]
    return [t for t in terms if t][:MAX_TERMS]


def clean_labels(labels: Iterable[str]) -> list[str]:
    """Tags as kept: stripped, inner spaces collapsed, each once whatever its case (the first
    spelling kept). ConfigError naming ``labels`` for anything else than short plain strings."""
    if isinstance(labels, (str, bytes)) or not isinstance(labels, Iterable):
        raise ConfigError("labels", f"tags are a list of strings, not {type(labels).__name__} {str(labels)[:40]!r}")
    out: dict[str, str] = {}
    for label in labels:
        if not isinstance(label, str):
            raise ConfigError("labels", f"a tag is a string, not {type(label).__name__} {label!r}")
        tag = " ".join(label.split())
        if not tag:
            continue
        if len(tag) > LABEL_CHARS or not _LABEL.fullmatch(tag):
            raise ConfigError("labels", f"a tag is short plain text (letters, digits, spaces and - _ . : + / # @, "
                                        f"starting with a letter or digit, at most {LABEL_CHARS} characters), "
                                        f"not {tag[:60]!r}")
        out.setdefault(tag.lower(), tag)
    if len(out) > MAX_LABELS:
        raise ConfigError("labels", f"a run carries at most {MAX_LABELS} tags, not {len(out)}")
    return list(out.values())


def _like(text: str) -> str:
    """``%text%`` for ``LIKE ? ESCAPE '\\'``, its own wildcards escaped."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _and(*parts: tuple[str, list]) -> tuple[str, list]:
    sql = [s for s, _ in parts if s]
    return (" AND ".join(f"({s})" for s in sql) or "1=1"), [a for _, args in parts for a in args]


def _in(column: str, values: Sequence[Any]) -> tuple[str, list]:
    return f"{column} IN ({','.join('?' * len(values))})", list(values)


def _study_clause(study: str | None) -> tuple[str, list]:
    if study is None:
        return "", []
    if study == NO_STUDY:
        return "r.id NOT IN (SELECT run_id FROM study_runs WHERE run_id IS NOT NULL)", []
    return "r.id IN (SELECT run_id FROM study_runs WHERE study = ?)", [study]


_FIELDS = ("r.name", "r.id", "r.note", "r.labels", "r.tags", "r.config")


def _term_clause(term: str) -> tuple[str, list]:
    """Rows where ``term`` may match: a superset of what :func:`_matches` keeps."""
    pattern = _like(term)
    ors = [f"lower({f}) LIKE ? ESCAPE '\\'" for f in _FIELDS]
    ors.append("r.id IN (SELECT sr.run_id FROM study_runs sr JOIN studies s ON s.id = sr.study"
               " WHERE lower(s.name) LIKE ? ESCAPE '\\' OR lower(s.id) LIKE ? ESCAPE '\\')")
    return " OR ".join(ors), [pattern] * (len(_FIELDS) + 2)


Facts = tuple[str, tuple[str, ...], str]  # a run's method, tasks and baseline_of, read off its config


def _facts(cfg: dict[str, Any]) -> Facts:
    weighting = cfg.get("weighting") if isinstance(cfg.get("weighting"), dict) else {}
    return (str(weighting.get("method") or ""), tuple(str(t) for t in cfg.get("tasks") or ()),
            str(cfg.get("baseline_of") or ""))


def _light(row: Any, facts: Facts, served: dict[str, list[str]], names: dict[str, str],
           config: dict[str, Any] | None) -> dict[str, Any]:
    """A run's row as the lists show it: no metrics, the config only when given."""
    tags = json.loads(row["tags"] or "{}")
    studies = served.get(row["id"], [])
    study = tags.get("study") if tags.get("study") in studies else (studies[0] if studies else "")
    out = {k: row[k] for k in ("id", "name", "status", "created", "updated", "started", "finished", "step",
                               "total_steps", "source", "note")}
    out.update(method=facts[0], tasks=list(facts[1]), study=study, study_name=names.get(study, ""), studies=studies,
               level=str(tags.get("label") or "") if study else "", seed=tags.get("seed") if study else None,
               labels=json.loads(row["labels"] or "[]"), baseline_of=facts[2])
    if config is not None:
        out["config"] = config
    return out


def _matches(row: Any, studies: list[str], terms: list[str], names: dict[str, str], wanted: set[str] | None,
             facts: Callable[[], Facts]) -> bool:
    """Whether every term is in the run's name, id, note, one of its tags, its level, the name or id
    of a study it serves, its method or one of its tasks (``facts()`` asked only when the others do
    not say), and whether it is a baseline of a ``wanted`` run."""
    tags = json.loads(row["tags"] or "{}")
    hay = [str(f).lower() for f in (row["name"], row["id"], row["note"], tags.get("label") if studies else "",
                                    *json.loads(row["labels"] or "[]"), *studies,
                                    *(names.get(s, "") for s in studies)) if f]
    left = [t for t in terms if not any(t in f for f in hay)]
    if not left and wanted is None:
        return True
    method, tasks, baseline_of = facts()
    if wanted is not None and baseline_of not in wanted:
        return False
    hay = [f.lower() for f in (method, *tasks) if f]
    return all(any(t in f for f in hay) for t in left)


class Listing:
    """The run store's listing and a person's annotations (mixed into RunStore, whose ``query``
    and ``transaction`` it uses)."""

    root: Any

    # -- a person's own words on a run ------------------------------------------------------
    def set_note(self, run_id: str, note: str) -> None:
        """The run's note (free text, at most :data:`NOTE_CHARS`); an empty one clears it."""
        if not isinstance(note, str):
            raise ConfigError("note", f"a note is text, not {type(note).__name__}")
        if len(note) > NOTE_CHARS:
            raise ConfigError("note", f"a note holds at most {NOTE_CHARS} characters, not {len(note)}")
        self._annotate(run_id, "note", note.strip())

    def set_labels(self, run_id: str, labels: Iterable[str]) -> list[str]:
        """The run's tags (a person's own, beside the study ``tags`` the store sets), replacing
        those it had; returns them as kept (see :func:`clean_labels`)."""
        kept = clean_labels(labels)
        self._annotate(run_id, "labels", json.dumps(kept, ensure_ascii=False))  # LIKE sees the letters as typed
        return kept

    def _annotate(self, run_id: str, column: str, value: str) -> None:
        """Write the run's ``note`` or ``labels`` column."""
        check_run_id(run_id)
        sql = _ANNOTATE[column]  # one of two fixed statements: no SQL is built from text
        with self.transaction() as c:
            if c.execute(sql, (value, run_id)).rowcount == 0:
                raise ConfigError("run_id", f"no run {run_id!r} in {self.root}")

    # -- the run lists ----------------------------------------------------------------------
    def find_runs(self, text: str = "", statuses: Sequence[str] | None = None, study: str | None = None,
                  label: str | None = None, *, ids: Sequence[str] | None = None,
                  baseline_of: Sequence[str] | None = None, limit: int = 200, config: bool = False,
                  counts: bool = True) -> RunList:
        """Runs newest first that match every filter given, at most ``limit`` of them, as light rows:
        ``id, name, status, created, updated, started, finished, step, total_steps, source, note, method, tasks,
        labels`` (the person's tags), ``study`` (the study it is grouped under: the one that
        started it, else the first it serves; ``""`` for none) with ``study_name``, ``studies``
        (every study it serves), ``level`` and ``seed`` in its study, ``baseline_of``; and
        ``config`` itself when ``config``.

        ``text``: words (or "quoted phrases") each found in the name, id, note, a tag, the method,
        a task, the level, or a study's name; ``statuses``: any of these; ``study``: a study id
        (runs serving it), or :data:`NO_STUDY`; ``label``: carrying this tag (any case); ``ids``:
        these runs; ``baseline_of``: single-task baselines of these runs. ``counts``: False leaves
        the counts per status and study out (a lookup, not a list with filters).

        Without ``text`` or ``baseline_of`` the page and the counts are a few indexed queries
        whatever the number of runs; with them, the rows SQL cannot rule out are read and decided
        here (the config parsed once each)."""
        limit = max(0, int(limit))
        terms = search_terms(text)
        wanted = sorted({check_run_id(b) for b in baseline_of or ()})
        names = {r[0]: r[1] for r in self.query("SELECT id, name FROM studies ORDER BY created DESC, id")}
        tag = json.dumps(" ".join(label.split()), ensure_ascii=False).lower() if label else ""  # as kept: '"tag"'
        base = [("lower(r.labels) LIKE ? ESCAPE '\\'", [_like(tag)]) if label else ("", [])]
        if ids is not None:
            base.append(_in("r.id", list(ids)) if ids else ("1=0", []))
        by_status = (_in("r.status", [str(s) for s in statuses]) if statuses else ("1=0", [])) \
            if statuses is not None else ("", [])
        by_study = _study_clause(study)
        if terms or baseline_of is not None:
            narrowed = [_term_clause(t) for t in terms]
            if baseline_of is not None:  # a run's baselines are started after it (a minute's slack for clocks)
                since = self.query(f"SELECT MIN(created) FROM runs WHERE {_in('id', wanted)[0]}", wanted)[0][0] \
                    if wanted else None
                likes = [("r.config LIKE ? ESCAPE '\\'", [_like(f'"baseline_of": "{b}"')]) for b in wanted]
                narrowed += [(" OR ".join(sql for sql, _ in likes) or "1=0", [x for _, xs in likes for x in xs]),
                             ("r.created >= ?", [since - 60.0]) if since is not None else ("1=0", [])]
            found = self._verified(_and(*base, *narrowed), terms, set(wanted) if baseline_of is not None else None,
                                   statuses, study, names, limit, config)
            return found if counts else RunList(found.rows, found.total, study_names=names)
        where, args = _and(*base, by_status, by_study)
        total = int(self.query(f"SELECT COUNT(*) FROM runs r WHERE {where}", args)[0][0])
        # newest first by the creation index alone (a tie-break would sort every matching row)
        rows = self.query(f"SELECT {_COLUMNS} FROM runs r WHERE {where} ORDER BY r.created DESC LIMIT ?",
                          [*args, limit]) if limit else []
        served = self._served([r["id"] for r in rows])
        texts = self._configs([r["id"] for r in rows]) if config else {}
        configs = {i: json.loads(c or "{}") for i, c in texts.items()}
        facts = self._facts(rows, configs)
        page = [_light(r, facts[r["id"]], served, names, configs.get(r["id"])) for r in rows]
        if not counts:
            return RunList(page, total, study_names=names)
        sql, a = _and(*base, by_study)
        per_status = {str(s): int(n) for s, n in
                      self.query(f"SELECT r.status, COUNT(*) FROM runs r WHERE {sql} GROUP BY r.status", a)}
        return RunList(page, total, per_status, self._per_study(base), names)

    def _per_study(self, base: list[tuple[str, list]]) -> dict[str, int]:
        """Runs per study they serve and :data:`NO_STUDY`, of those the ``base`` filters keep. Without
        any, read off study_runs alone (the runs table is not walked)."""
        sql, a = _and(*base)
        if any(part for part, _ in base):
            join, everyone = " JOIN runs r ON r.id = sr.run_id WHERE " + sql, f"SELECT COUNT(*) FROM runs r WHERE {sql}"
        else:
            join, everyone = " WHERE sr.run_id IS NOT NULL", "SELECT COUNT(*) FROM runs"
        out = {str(s): int(n) for s, n in self.query(
            f"SELECT sr.study, COUNT(DISTINCT sr.run_id) FROM study_runs sr{join} GROUP BY sr.study", a)}
        in_any = int(self.query(f"SELECT COUNT(DISTINCT sr.run_id) FROM study_runs sr{join}", a)[0][0])
        out[NO_STUDY] = int(self.query(everyone, a)[0][0]) - in_any
        return {s: n for s, n in out.items() if n}

    def _configs(self, run_ids: list[str]) -> dict[str, str]:
        """The config JSON of these runs, by id."""
        return {i: c for i, c in self.query(f"SELECT id, config FROM runs WHERE {_in('id', run_ids)[0]}", run_ids)} \
            if run_ids else {}

    def _facts(self, rows: list[Any], configs: dict[str, dict[str, Any]]) -> dict[str, Facts]:
        """Each row's run's method, tasks and baseline_of: kept by the store once read (a run's config
        never changes once written; a run made again under an old id has another creation time),
        else from ``configs`` (parsed) or the runs' config read now."""
        memo: dict[tuple[str, float], Facts] = self.__dict__.setdefault("_listing_facts", {})
        out = {r["id"]: memo[r["id"], r["created"]] for r in rows if (r["id"], r["created"]) in memo}
        missing = [r for r in rows if r["id"] not in out]
        if missing:
            texts = self._configs([r["id"] for r in missing if r["id"] not in configs])
            if len(memo) + len(missing) > _FACTS:
                memo.clear()
            for r in missing:
                cfg = configs.get(r["id"])
                out[r["id"]] = memo[r["id"], r["created"]] = _facts(cfg if cfg is not None
                                                                     else json.loads(texts.get(r["id"]) or "{}"))
        return out

    def _served(self, run_ids: list[str] | None) -> dict[str, list[str]]:
        """The studies each run serves (``None``: every run's), in the order they planned it."""
        if run_ids is not None and not run_ids:
            return {}
        sql, args = _in("run_id", run_ids) if run_ids is not None else ("run_id IS NOT NULL", [])
        out: dict[str, list[str]] = {}
        for run_id, study in self.query(f"SELECT run_id, study FROM study_runs WHERE {sql} ORDER BY study, position",
                                        args):
            out.setdefault(run_id, []).append(study)
        return out

    def _verified(self, narrowed: tuple[str, list], terms: list[str], wanted: set[str] | None,
                  statuses: Sequence[str] | None, study: str | None, names: dict[str, str], limit: int,
                  config: bool) -> RunList:
        """:meth:`find_runs` with a search: the rows SQL could not rule out, decided one by one."""
        where, args = narrowed
        rows = self.query(f"SELECT {_COLUMNS}, r.config FROM runs r WHERE {where} ORDER BY r.created DESC", args)
        served = self._served([r["id"] for r in rows] if len(rows) <= 500 else None) if rows else {}
        memo: dict[tuple[str, float], Facts] = self.__dict__.setdefault("_listing_facts", {})

        def facts_of(row: Any) -> Callable[[], Facts]:
            def read() -> Facts:
                key = (row["id"], row["created"])
                if key not in memo and len(memo) < _FACTS:
                    memo[key] = _facts(json.loads(row["config"] or "{}"))
                return memo.get(key) or _facts(json.loads(row["config"] or "{}"))
            return read

        keep_status = set(map(str, statuses)) if statuses is not None else None
        counts: dict[str, int] = {}
        per_study: dict[str, int] = {}
        shown = []
        for row in rows:
            studies = served.get(row["id"], [])
            if not _matches(row, studies, terms, names, wanted, facts_of(row)):
                continue
            in_study = study is None or (not studies if study == NO_STUDY else study in studies)
            in_status = keep_status is None or row["status"] in keep_status
            if in_study:
                counts[row["status"]] = counts.get(row["status"], 0) + 1
            for s in studies or [NO_STUDY]:
                per_study[s] = per_study.get(s, 0) + 1
            if in_study and in_status:
                shown.append(row)
        page = shown[:limit]
        configs = {r["id"]: json.loads(r["config"] or "{}") for r in page
                   if config or (r["id"], r["created"]) not in memo}
        facts = self._facts(page, configs)
        return RunList([_light(r, facts[r["id"]], served, names, configs.get(r["id"]) if config else None)
                        for r in page], len(shown), counts, per_study, names)
