"""The open-file limit: every socket is a file descriptor.

Container runtimes commonly start a process with a soft `RLIMIT_NOFILE` of 1024 and a much
higher hard limit, and Python never raises the soft one: a relay replica would then refuse
connections at about a thousand sockets. Raising the soft limit to the hard one needs no
privilege, so both services do it at start and log the figures.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

from shared.logging import get_logger

log = get_logger(__name__)

UNLIMITED_CAP = 1_048_576
"""Used when the hard limit is `unlimited`: Linux refuses more than `fs.nr_open` (this by
default) for a soft limit, so `unlimited` is not a value the soft limit can take."""


@dataclass(frozen=True, slots=True)
class OpenFileLimit:
    previous_soft: int
    soft: int
    hard: int


def raise_open_file_limit() -> OpenFileLimit:
    """Raise the soft open-file limit to the hard limit; log and return both.

    A refusal (a sandbox that forbids it) is logged and leaves the limit as it was: the
    service still starts, with the capacity the log line states.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = UNLIMITED_CAP if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as error:
            log.warning("open_file_limit_not_raised", soft=soft, hard=hard, error=str(error))
            return OpenFileLimit(previous_soft=soft, soft=soft, hard=hard)
    raised, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    log.info("open_file_limit", soft=raised, hard=hard, previous_soft=soft)
    return OpenFileLimit(previous_soft=soft, soft=raised, hard=hard)
