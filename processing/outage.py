"""Riding out a Redis outage: how long to wait before asking again, and what to log.

A worker that loses Redis must neither exit nor log a traceback per poll. Whoever
talks to Redis in a loop keeps one :class:`Outage`: ``failed()`` on an error returns
how long to wait before the next attempt (doubling from ``first_delay`` up to
``max_delay``, with jitter so that many workers do not reconnect in step) and logs
one line when Redis goes away; ``answered()`` logs one line when it is back. The
worst case between Redis's return and the next attempt is ``max_delay``.
"""

from __future__ import annotations

import logging
import random
import time

from redis.exceptions import RedisError

OUTAGE_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError)
"""What a lost or restarting Redis raises (refused, reset, timeout, LOADING)."""

MAX_DELAY = 1.0
"""Seconds between two attempts at most: the worker's recovery bound after Redis returns."""


class Outage:
    """The up/down state of one loop's Redis, with backoff and one log line per change."""

    def __init__(
        self,
        what: str,
        logger: logging.Logger,
        *,
        first_delay: float = 0.05,
        max_delay: float = MAX_DELAY,
    ) -> None:
        self.what = what
        self.logger = logger
        self.first_delay = first_delay
        self.max_delay = max_delay
        self._delay = first_delay
        self.since: float | None = None
        """``time.monotonic()`` of the first failure of the current outage; None while up."""

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, exc: BaseException) -> float:
        """Note a failed attempt; the seconds to wait before the next one."""
        if self.since is None:
            self.since = time.monotonic()
            self._delay = self.first_delay
            self.logger.warning(
                "%s: Redis unavailable (%s: %s); retrying every %.1f s at most",
                self.what,
                type(exc).__name__,
                exc,
                self.max_delay,
            )
        delay = self._delay
        self._delay = min(self._delay * 2, self.max_delay)
        return delay * random.uniform(0.5, 1.0)

    def answered(self) -> None:
        """Note a successful attempt (logs once if Redis was away)."""
        if self.since is not None:
            self.logger.warning("%s: Redis is back after %.1f s", self.what, time.monotonic() - self.since)
            self.since = None
            self._delay = self.first_delay
