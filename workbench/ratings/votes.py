"""A rating task's votes: appended, never lost, each once.

Each rater's votes go to ``votes/<rater>.jsonl`` in the task's folder, one fsync'd line per vote, written by one
writer at a time (a lock per store). A vote has an id (``vote_id``, the client's): a vote sent again with its id
is the same vote (its first answer is kept), so a client may resend whatever it is not sure was stored. An
``undo`` is a line of its own that retracts a vote; nothing is ever rewritten.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from workbench.errors import ConfigError, VoteConflict
from workbench.ratings.task import SKIP, RatingTask

try:
    import fcntl  # POSIX: a lock other processes see too
except ImportError:  # Windows: the lock holds within this process only
    fcntl = None

__all__ = ["INTERFACES", "Vote", "VoteStore", "check_rater"]

INTERFACES = ("widget", "page", "labelstudio", "sheet", "simulated")
_RATER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Vote:
    """One answer of one rater to one question about one item, with the order the images were shown in
    (``shown``: left then right), when it came, how long the rater took, and through which interface."""

    vote_id: str
    rater: str
    item_id: str
    question: str
    answer: str
    shown: tuple[str, ...]
    at: float
    decided_s: float | None
    interface: str
    reason: str | None = None  # why an item was skipped


class VoteStore:
    """The votes of ``task``. ``add`` checks a vote against the task (the item, the question, the answer, the
    images the rater was shown) and stores it once; ``votes`` reads back every rater's standing votes."""

    def __init__(self, task: RatingTask):
        self.task = task
        self.folder = task.path / RatingTask.VOTES
        self._lock = threading.Lock()

    def add(
        self,
        rater: str,
        item_id: str,
        question: str,
        answer: str,
        *,
        shown: tuple[str, ...] | list[str],
        vote_id: str | None = None,
        decided_s: float | None = None,
        interface: str = "widget",
        reason: str | None = None,
    ) -> tuple[Vote, bool]:
        """Store a vote; returns it and whether it is new (False: this ``vote_id`` was stored before, and the
        stored vote is returned unchanged). Anything that does not fit the task is refused, naming it."""
        check_rater(rater)
        item = self.task.items.get(item_id)
        if item is None:
            raise ConfigError(f"no item {item_id!r} in this task", "item_id")
        allowed = self.task.question(question, item_id).answers
        if answer not in (*allowed, SKIP):
            raise ConfigError(f"answer must be one of {[*allowed, SKIP]}, got {answer!r}", "answer")
        if sorted(shown) != sorted(item.images):
            raise ConfigError(f"shown must be the item's images in the order shown, got {list(shown)}", "shown")
        if interface not in INTERFACES:
            raise ConfigError(f"interface must be one of {list(INTERFACES)}, got {interface!r}", "interface")
        if decided_s is not None and not (isinstance(decided_s, int | float) and 0 <= decided_s < 86400):
            raise ConfigError(f"decided_s must be seconds from 0 to a day, got {decided_s!r}", "decided_s")
        vote = Vote(vote_id or uuid.uuid4().hex, rater, item_id, question, answer, tuple(shown), time.time(),
                    decided_s, interface, reason if answer == SKIP else None)  # fmt: skip
        with self._exclusive(rater):
            standing, undone = self._history(rater)
            earlier = standing.get(vote.vote_id) or undone.get(vote.vote_id)  # a late resend of an undone vote
            if earlier is not None:
                if (earlier["item_id"], earlier["question"]) != (item_id, question):
                    raise ConfigError(f"vote {vote.vote_id!r} was given for another item or question", "vote_id")
                return _vote(earlier), False
            if any((r["item_id"], r["question"]) == (item_id, question) for r in standing.values()):
                raise VoteConflict(f"{rater} has answered {question!r} on {item_id!r} already (undo it first)")
            self._append(rater, asdict(vote))
        return vote, True

    def undo(self, rater: str, vote_id: str) -> None:
        """Retract ``rater``'s vote ``vote_id`` (a line of its own; the vote's line stays)."""
        check_rater(rater)
        with self._exclusive(rater):
            if vote_id not in self._records(rater):
                raise ConfigError(f"{rater} has no vote {vote_id!r}", "vote_id")
            self._append(rater, {"undo": vote_id, "at": time.time()})

    def votes(self, rater: str | None = None) -> list[Vote]:
        """The standing votes (undone ones left out) of ``rater``, or of every rater, in the order given."""
        raters = [rater] if rater is not None else self.raters()
        return [_vote(record) for name in raters for record in self._records(name).values()]

    def raters(self) -> list[str]:
        return sorted(path.stem for path in self.folder.glob("*.jsonl")) if self.folder.is_dir() else []

    def answered(self, rater: str) -> set[tuple[str, str]]:
        """The (item, question) pairs ``rater`` has a standing vote on."""
        return {(vote.item_id, vote.question) for vote in self.votes(rater)}

    def _records(self, rater: str) -> dict[str, dict[str, Any]]:
        return self._history(rater)[0]

    def _history(self, rater: str) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        """``rater``'s standing votes and undone ones, by vote id."""
        path = self.folder / f"{rater}.jsonl"
        standing: dict[str, dict[str, Any]] = {}
        undone: dict[str, dict[str, Any]] = {}
        for line in path.read_text().splitlines() if path.is_file() else []:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a crash: its vote was never answered as stored
                continue
            if "undo" in record:
                if record["undo"] in standing:
                    undone[record["undo"]] = standing.pop(record["undo"])
            elif record["vote_id"] not in undone:
                standing.setdefault(record["vote_id"], record)
        return standing, undone

    @contextmanager
    def _exclusive(self, rater: str):
        """One writer of ``rater``'s votes at a time, across threads and processes (the page, a panel, an
        import)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.folder / f".{rater}.lock", "a") as lock:
            if fcntl is not None:
                fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _append(self, rater: str, record: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / f"{rater}.jsonl", "a+b") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell():
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    fh.write(b"\n")  # close off a line cut short by a crash
            fh.write(json.dumps(record).encode() + b"\n")
            fh.flush()
            os.fsync(fh.fileno())


def check_rater(rater: str) -> None:
    """A rater's name is a file name: letters, digits, dot, dash and underscore, up to 64 characters."""
    if not isinstance(rater, str) or not _RATER.match(rater):
        raise ConfigError(f"a rater's name is letters, digits, '.', '-' and '_' (up to 64), got {rater!r}", "rater")


def _vote(record: dict[str, Any]) -> Vote:
    return Vote(**{**record, "shown": tuple(record["shown"])})
