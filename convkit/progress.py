"""Keras-style progress bars: the bar ``fit`` prints, and a small wrapper for other loops.

Keras 3's layout: the count, a bar of 20 ``━`` (done in green, to do in grey on a terminal),
the time left (while running) or taken (at the end), the time per step, then the values.
``verbose=1`` on a terminal redraws one line with ``\\r``::

     12/125 ━━━━━━━━━━━━━━━━━━━━ 3s 31ms/step - loss: 0.4210 - accuracy: 0.8750

and ends the epoch with ``125/125 ━━━━━━━━━━━━━━━━━━━━ 4s 31ms/step - loss: ...``. On a
terminal the count and the times are bold and the bar coloured, as Keras prints them
(``NO_COLOR`` in the environment turns the colours off). When the stream is not a terminal
(CI logs, files) the lines are plain text, the part still to do drawn ``─``, at most
``max_lines`` of them per bar (each time another tenth of the target is done) plus the final
one. ``verbose=2`` prints only the final line, ``125/125 - 4s - 31ms/step - loss: ...``;
``verbose=0`` prints nothing. ``predict`` draws the same bar without values. The callback
that draws it during ``fit``/``evaluate``/``predict`` is
:class:`convkit.callbacks.ProgressBarLogger`; this module knows nothing of callbacks.

The values shown are displayed as given (``fit`` passes running means), formatted ``.4f``,
or ``.4e`` when their magnitude is at most 1e-3.
"""
from __future__ import annotations

import os
import sys
import time

__all__ = ["ProgressBar", "progress_iter"]


# Keras's terminal styles (ANSI): bold counts and times, a green and grey bar
_BOLD, _GREEN, _GREY, _RESET = "\x1b[1m", "\x1b[32m", "\x1b[37m", "\x1b[0m"


def _format_value(value) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{number:.4f}" if abs(number) > 1e-3 else f"{number:.4e}"


def _format_eta(seconds: float) -> str:
    seconds = int(seconds)
    if seconds > 3600:
        return f"{seconds // 3600}:{(seconds % 3600) // 60:02d}:{seconds % 60:02d}"
    if seconds > 60:
        return f"{seconds // 60}:{seconds % 60:02d}"
    return f"{seconds}s"


def _format_time_per_unit(seconds: float, unit: str) -> str:
    if seconds >= 1 or seconds == 0:
        return f"{seconds:.0f}s/{unit}"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/{unit}"
    return f"{seconds * 1e6:.0f}us/{unit}"


class ProgressBar:
    """A progress bar over ``target`` units (``None`` if unknown).

    ``update(current, values)`` reports ``current`` units done and the values to show
    (a dict, or a list of ``(name, value)`` pairs); ``finish(values)`` prints the final line.

    Arguments: ``verbose`` 0/1/2 (see the module docstring); ``unit`` the name in the
    time-per-unit field; ``stream`` where to write (default: ``sys.stdout`` at print time);
    ``width`` of the bar; ``interval`` the minimum seconds between terminal redraws;
    ``dynamic`` forces terminal (True) or log (False) mode instead of ``stream.isatty()``;
    ``max_lines`` the number of intermediate lines in log mode; ``prefix`` text put before
    the counter.

        >>> import io
        >>> out = io.StringIO()
        >>> bar = ProgressBar(4, stream=out)
        >>> for step in range(1, 5):
        ...     bar.update(step, {"loss": 1.0 / step})
        >>> bar.finish({"loss": 0.25})
        >>> out.getvalue().splitlines()[-1].startswith("4/4 ━━━━━━━━━━━━━━━━━━━━ ")
        True
    """

    def __init__(self, target, verbose=1, unit="step", stream=None, width=20, interval=0.05,
                 dynamic=None, max_lines=10, prefix=""):
        if verbose not in (0, 1, 2):
            raise ValueError(f"ProgressBar: verbose must be 0, 1 or 2, got {verbose!r}")
        if target is not None and int(target) < 0:
            raise ValueError(f"ProgressBar: target must be >= 0 or None, got {target!r}")
        self.target = None if target is None else int(target)
        self.verbose = verbose
        self.unit = unit
        self._stream = stream
        self.width = int(width)
        self.interval = float(interval)
        self._dynamic = dynamic
        self.max_lines = max(int(max_lines), 0)
        self.prefix = prefix
        self._values: dict = {}
        self._start = time.monotonic()
        self._first_step_done = None     # when unit 1 was reported (Keras leaves it out)
        self._last_draw = 0.0
        self._prev_width = 0
        self._lines_printed = 0
        self._next_milestone = 1
        self.current = 0
        self.finished = False

    # ------------------------------------------------------------------ output
    @property
    def stream(self):
        return self._stream if self._stream is not None else sys.stdout

    @property
    def dynamic(self) -> bool:
        if self._dynamic is not None:
            return bool(self._dynamic)
        isatty = getattr(self.stream, "isatty", None)
        try:
            return bool(isatty()) if isatty is not None else False
        except ValueError:                                  # closed stream
            return False

    def _write(self, text: str) -> None:
        self.stream.write(text)
        flush = getattr(self.stream, "flush", None)
        if flush is not None:
            flush()

    # ------------------------------------------------------------------ lines
    def _counter(self, current) -> str:
        if self.target is None:
            return f"{self.prefix}{current:7d}/Unknown"
        digits = len(str(self.target))
        return f"{self.prefix}{current:{digits}d}/{self.target}"

    def _bar(self, current, styled: bool) -> str:
        if self.target is None or self.target == 0:
            return ""
        filled = int(self.width * min(current / self.target, 1.0))
        if styled:                       # Keras's colours: done green, to do grey
            return f" {_GREEN}{'━' * filled}{_RESET}{_GREY}{'━' * (self.width - filled)}{_RESET}"
        return " " + "━" * filled + "─" * (self.width - filled)

    def _values_text(self) -> str:
        return "".join(f" - {name}: {_format_value(value)}" for name, value in
                       self._values.items())

    def _line(self, current, finished, now, styled: bool = False) -> str:
        """The text of the bar; ``styled`` adds Keras's bold and colours (terminals)."""
        elapsed = now - self._start
        per_unit = self._time_per_unit(current, now)
        if self.verbose == 2:
            return (f"{self._counter(current)} - {elapsed:.0f}s - "
                    f"{_format_time_per_unit(per_unit, self.unit)}{self._values_text()}")
        bold, reset = (_BOLD, _RESET) if styled else ("", "")
        line = f"{bold}{self._counter(current)}{reset}" + self._bar(current, styled)
        if finished or self.target is None:
            when = f"{elapsed:.0f}s"
        else:
            when = _format_eta(per_unit * (self.target - current))
        line += f" {bold}{when}{reset} {_format_time_per_unit(per_unit, self.unit)}"
        return line + self._values_text()

    def _time_per_unit(self, current, now) -> float:
        """Seconds per unit, as Keras estimates it: after the first unit, the time since
        that unit ended over the units since (the first one pays for warm-up)."""
        if not current:
            return 0.0
        if self._first_step_done is not None and current > 1:
            return (now - self._first_step_done) / (current - 1)
        return (now - self._start) / current

    def _styled(self) -> bool:
        return self.dynamic and not os.environ.get("NO_COLOR")

    def _redraw(self, current, finished, now) -> str:
        """``\\r`` + the line, padded over what the previous line left on screen."""
        plain = self._line(current, finished, now)
        line = self._line(current, finished, now, styled=self._styled())
        padding = " " * max(self._prev_width - len(plain), 0)
        self._prev_width = len(plain)
        return "\r" + line + padding

    # ------------------------------------------------------------------ API
    def _store(self, values):
        if values:
            items = values.items() if isinstance(values, dict) else values
            for name, value in items:
                self._values[name] = value

    def update(self, current, values=None) -> None:
        """``current`` units done; ``values`` ``{name: value}`` to display."""
        self._store(values)
        self.current = int(current)
        if self.current == 1 and self._first_step_done is None:
            self._first_step_done = time.monotonic()
        if self.verbose != 1 or self.finished:
            return
        now = time.monotonic()
        if self.dynamic:
            if now - self._last_draw < self.interval:
                return
            self._write(self._redraw(self.current, False, now))
            self._last_draw = now
            return
        # Log mode: one line each time another 1/max_lines of the target is reached.
        if self.target is None or self.max_lines == 0 or self.current >= self.target:
            return
        milestone = self.current * self.max_lines // max(self.target, 1)
        if milestone >= self._next_milestone:
            self._next_milestone = milestone + 1
            self._write(self._line(self.current, False, now) + "\n")
            self._lines_printed += 1

    def finish(self, values=None) -> None:
        """Print the final line (verbose 1 and 2); later updates print nothing."""
        self._store(values)
        if self.finished:
            return
        self.finished = True
        if self.target is not None:
            self.current = self.target
        if self.verbose == 0:
            return
        now = time.monotonic()
        if self.verbose == 1 and self.dynamic:
            self._write(self._redraw(self.current, True, now) + "\n")
        else:
            self._write(self._line(self.current, True, now) + "\n")


def progress_iter(iterable, total=None, desc=None, verbose=1, stream=None, unit="it",
                  use_tqdm=False):
    """Yield from ``iterable`` while showing a progress bar (for data loading, predict, ...).

    ``total`` defaults to ``len(iterable)`` when it has one. ``use_tqdm=True`` uses tqdm when
    it is installed (the built-in bar otherwise); ``verbose=0`` shows nothing.

        >>> import io
        >>> out = io.StringIO()
        >>> sum(progress_iter(range(5), desc="load", stream=out))
        10
        >>> out.getvalue().splitlines()[-1].startswith("load: 5/5 ━")
        True
    """
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    if not verbose:
        yield from iterable
        return
    if use_tqdm:
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            yield from tqdm(iterable, total=total, desc=desc, file=stream, unit=unit)
            return
    bar = ProgressBar(total, verbose=verbose, unit=unit, stream=stream,
                      prefix=f"{desc}: " if desc else "")
    count = 0
    for item in iterable:
        yield item
        count += 1
        bar.update(count)
    if bar.target is None:
        bar.target = count
    bar.finish()
