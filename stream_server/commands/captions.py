"""Live captions from a stream's events (docs/PROTOCOL.md), written to a terminal or a pipe.

On a terminal the open utterance is one line, redrawn in place: its committed text plain, the
unstable tail (the latest partial) grey after it, cut to the terminal's width from the left so
the redraw never wraps; the utterance's final text then stays as a line of its own. Anywhere
else only final text is written, one utterance a line, so a pipe or a file gets clean lines.
"""

from __future__ import annotations

import shutil
from typing import TextIO

GREY = "\x1b[90m"
RESET = "\x1b[0m"
CLEAR_LINE = "\r\x1b[K"


class Captions:
    def __init__(self, out: TextIO, live: bool):
        self._out = out
        self.live = live
        """Redraw the open utterance on every delta and partial (a terminal)."""
        self._committed = ""
        self._partial = ""

    def show(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "transcript.text.delta":
            self._committed += event.get("delta", "")
            self._partial = ""  # it held the words just committed; the next partial replaces it
        elif kind == "transcript.text.partial":
            self._partial = event.get("text", "")
        elif kind == "transcript.utterance.done":
            self._end_line(event.get("text", "").strip())
            return
        else:
            return
        if self.live:
            self._redraw()

    def note(self, text: str, stream: TextIO) -> None:
        """A message on another stream (stderr), without garbling the line being redrawn."""
        if self.live:
            self._out.write(CLEAR_LINE)
            self._out.flush()
        print(text, file=stream, flush=True)
        if self.live and (self._committed or self._partial):
            self._redraw()

    def close(self) -> None:
        """End an utterance left open (a stream that failed mid-sentence)."""
        if self._committed or self._partial:
            self._end_line(self._committed.strip())

    def _redraw(self) -> None:
        committed, partial = self._committed.lstrip(), self._partial
        if not committed:
            partial = partial.lstrip()
        width = max(shutil.get_terminal_size().columns - 1, 10)
        overflow = len(committed) + len(partial) - width
        if overflow > 0:  # keep the end of the line, the words being spoken
            cut = min(overflow, len(committed))
            committed, partial = committed[cut:], partial[overflow - cut :]
        self._out.write(f"{CLEAR_LINE}{committed}{GREY}{partial}{RESET}")
        self._out.flush()

    def _end_line(self, text: str) -> None:
        self._committed = self._partial = ""
        if self.live:
            self._out.write(CLEAR_LINE)
        if text:
            self._out.write(text + "\n")
        self._out.flush()
