"""``requires_dependencies``: a view that answers 503 while a breaker it needs is open."""

from __future__ import annotations

import functools
import math

from degradation.breakers.core import BREAKER_NAMES, breaker
from degradation.breakers.storage import OPEN
from tenants.http import error_response

REFERENCED_NAMES: set[str] = set()
"""Every name given to ``requires_dependencies`` at import time; ``degradation.E001`` checks them."""


def requires_dependencies(*names: str):
    """Decorate a view (plain function, DRF function view or APIView method).

    While any named breaker is open the view is not called: the answer is a 503 in the API's error
    shape (code ``dependency_unavailable``, ``details.breakers``) with ``Retry-After`` (the longest
    wait among the open breakers). Checking costs one state read per breaker, nothing else.
    An unknown name is reported by the system check ``degradation.E001`` at start.
    """
    REFERENCED_NAMES.update(names)

    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            unavailable: dict[str, int] = {}
            for name in names:
                if name not in BREAKER_NAMES:
                    continue  # reported by the system check; not a reason to refuse requests
                guard = breaker(name)
                snap = guard.snapshot()
                if snap.state == OPEN and (snap.forced or guard.retry_after(snap) > 0):
                    unavailable[name] = max(1, math.ceil(guard.retry_after(snap)))
            if unavailable:
                return error_response(
                    503,
                    "dependency_unavailable",
                    f"Unavailable while {', '.join(unavailable)} is down. Retry shortly.",
                    details={"breakers": sorted(unavailable)},
                    wait=max(unavailable.values()),
                )
            return view(*args, **kwargs)

        return wrapper

    return decorate
