"""The most common passwords, refused at registration and password change.

OWASP's Authentication Cheat Sheet asks to block passwords found in breach
corpora. The list is zxcvbn's (the maintained Python port of Dropbox's
estimator): its ``passwords`` frequency list, 30,000 entries ranked by how often
they appear in leaked password dumps. Only membership is checked (case-folded):
zxcvbn's full scoring costs milliseconds per password and would run on the loop.
"""

from __future__ import annotations

from functools import cache

from zxcvbn.frequency_lists import FREQUENCY_LISTS


@cache
def _common() -> frozenset[str]:
    return frozenset(word.casefold() for word in FREQUENCY_LISTS["passwords"])


def is_common(password: str) -> bool:
    return password.casefold() in _common()
