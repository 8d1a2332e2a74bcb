"""The rating panel: a rating task's items, blind, rated in JupyterLab by one rater (``wb.RatingPanel``).

The prompt and the images (re-encoded without metadata, at the task's display size; small images were scaled up
without smoothing), a button per answer and skip, undo, progress; or keys typed into the keys box (1 or l: left,
2 or r: right, t: tie, s: skip, u: undo; for other tasks an answer's number). It starts where the rater left
off, shows the items the task's strategy chooses (``schedule.next_view``), and its votes go through the task's
``VoteStore``, as the page's do.
"""

from __future__ import annotations

import html
import time

import ipywidgets as w

from workbench.errors import WorkbenchError
from workbench.ratings.schedule import next_view, progress
from workbench.ratings.task import SKIP, RatingTask, View
from workbench.ratings.votes import VoteStore, check_rater

__all__ = ["RatingPanel"]

_KEYS = {"1": 0, "2": 1, "3": 2, "4": 3, "5": 4, "l": "left", "r": "right", "t": "tie", "s": SKIP}


class RatingPanel:
    """Rate ``task`` (a ``RatingTask`` or its folder) as ``rater``; display it in a notebook cell."""

    def __init__(self, task: RatingTask | str, rater: str):
        check_rater(rater)
        self.task = task if isinstance(task, RatingTask) else RatingTask(task)
        self.rater, self.store = rater, VoteStore(self.task)
        self.given: list[str] = []  # this session's vote ids, for undo
        self.view: View | None = None
        self.question = None
        self.shown_at = 0.0
        self.prompt = w.HTML()
        self.asked = w.HTML()
        self.images = w.HBox()
        self.buttons = w.HBox()
        self.undo_button = w.Button(description="undo", icon="undo")
        self.undo_button.on_click(lambda _: self.undo())
        self.keys = w.Text(placeholder="keys: 1/l left, 2/r right, t tie, s skip, u undo", continuous_update=True)
        self.keys.observe(self._key, names="value")
        self.progress = w.IntProgress(min=0, max=len(self.task.items), description="done")
        self.status = w.HTML()
        self.widget = w.VBox([
            w.HBox([self.progress, self.status]), self.prompt, self.asked, self.images,
            w.HBox([self.buttons, self.undo_button]), self.keys,
        ])  # fmt: skip
        self.show_next()

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    def show_next(self) -> None:
        """Show the next question the rater has not answered (``schedule.next_view``); or that they are done."""
        answered = self.store.answered(self.rater)  # read once for both
        done, total = progress(self.task, self.rater, answered)
        self.progress.value = done
        self.status.value = f"{done} of {total}"
        self.view = next_view(self.task, self.rater, answered)
        if self.view is None:
            self.question = None
            self.prompt.value, self.asked.value = "<b>All done: thank you.</b>", ""
            self.images.children, self.buttons.children = (), ()
            return
        self.question = self.view.questions[0]
        self.prompt.value = f"<b>Prompt:</b> {html.escape(self.view.prompt)}" if self.view.prompt else ""
        self.asked.value = html.escape(self.question.text)
        self.images.children = [
            w.Image(value=self.task.image(image_id).read_bytes(), format="png", layout=w.Layout(width="45%"))
            for image_id in self.view.images
        ]
        buttons = []
        for answer in (*self.question.answers, SKIP):
            button = w.Button(description=answer)
            button.on_click(lambda _, answer=answer: self.answer(answer))
            buttons.append(button)
        self.buttons.children = buttons
        self.shown_at = time.perf_counter()

    def answer(self, answer: str, reason: str | None = None) -> None:
        """Vote ``answer`` on the question shown, then show the next one (a refusal, e.g. the question answered
        meanwhile on the page, is said in the panel)."""
        if self.view is None:
            return
        try:
            vote, _ = self.store.add(
                self.rater, self.view.item_id, self.question.id, answer, shown=self.view.images,
                decided_s=time.perf_counter() - self.shown_at, interface="widget",
                reason=reason or ("skipped in the panel" if answer == SKIP else None),
            )  # fmt: skip
        except WorkbenchError as error:
            self.show_next()
            self.status.value += f" &middot; {html.escape(str(error))}"
            return
        self.given.append(vote.vote_id)
        self.show_next()

    def undo(self) -> None:
        """Take back this session's last vote and show its question again."""
        if self.given:
            self.store.undo(self.rater, self.given.pop())
            self.show_next()

    def _key(self, change) -> None:
        typed = change["new"].strip().lower()[-1:]  # a key typed before the box was cleared comes after the last
        if not typed:
            return
        self.keys.value = ""
        if typed == "u":
            self.undo()
            return
        if self.question is None or typed not in _KEYS:
            return
        answers = (*self.question.answers, SKIP)
        key = _KEYS[typed]
        answer = answers[key] if isinstance(key, int) and key < len(answers) else key
        if answer in answers:
            self.answer(answer)
