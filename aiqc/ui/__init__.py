"""``aiqc ui``: a live, read-only dashboard of an aiqc database in the browser.

    aiqc ui [--db URL] [--port 8050] [--host 127.0.0.1]

or, from Python, ``aiqc.ui.serve(db)``; ``aiqc.ui.make_app(db)`` returns the ASGI app (Starlette)
to run under any ASGI server or to test with ``starlette.testclient.TestClient``.

Pages: the queues (jobs per state, a progress bar polled every 2 s, the best score), a queue
(its metrics table paged, sorted and filtered on the server, its charts), a job (its
hyperparameters, metrics, traceback and charts, and the queue's report to download) and a
comparison of queues. Every chart is a plotly figure that :mod:`aiqc.plots` computes from
stored data, drawn by the plotly.js that the installed ``plotly`` package ships (no CDN: it
works offline).

The app opens the database read-only (``aiqc.setup(db, read_only=True)``), never writes and
never unpickles (it runs no stored user code). It has no authentication: it binds to
127.0.0.1 by default, answers only requests addressed to this machine then (a web page
elsewhere cannot reach it through DNS rebinding), and warns when told to bind elsewhere.
Starlette and uvicorn come with ``pip install 'aiqc[ui]'``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from typing import TYPE_CHECKING, Any, Callable

from aiqc.exceptions import MissingExtraError, ValidationError

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["serve", "make_app", "DEFAULT_HOST", "DEFAULT_PORT", "LOCAL_HOSTS"]

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8050
#: the hosts that only this machine can reach; any other binding gets a warning
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
#: what the Host header of a request may name while the app is bound to a local host
LOCAL_HOST_NAMES = ("127.0.0.1", "localhost", "::1")
#: the packages of the ``aiqc[ui]`` extra that the app needs at run time
REQUIRED = ("starlette", "uvicorn")


def require_extra() -> None:
    """Raise :class:`~aiqc.exceptions.MissingExtraError` unless starlette and uvicorn are installed."""
    missing = [name for name in REQUIRED if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingExtraError(f"aiqc ui needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
                                "not installed; install them with: pip install 'aiqc[ui]'")


def make_app(db: str | os.PathLike | None = None, read_only: bool = True,
             allowed_hosts: tuple[str, ...] | list[str] | None = None) -> "Starlette":
    """The dashboard as a Starlette app over the database ``db`` (as :func:`aiqc.setup` takes
    it; None: ``AIQC_DB`` or the default file), opened now with ``read_only`` (default True:
    every write fails). ``allowed_hosts``: the names a request's Host header may carry (None:
    any); :func:`serve` passes :data:`LOCAL_HOST_NAMES` when it binds to a local host.

    Like :func:`aiqc.setup`, it binds this process's aiqc database: the app serves whatever
    database the process has open, so call it once per process (a server, a test)."""
    require_extra()
    if not isinstance(read_only, bool):
        raise ValidationError.expected("read_only", "True or False", read_only)
    if allowed_hosts is not None and (isinstance(allowed_hosts, str)
                                      or not all(isinstance(h, str) and h for h in allowed_hosts)):
        raise ValidationError.expected("allowed_hosts", "None or a list of host names", allowed_hosts)
    from aiqc.ui.app import build_app

    return build_app(db, read_only, None if allowed_hosts is None else tuple(h.lower() for h in allowed_hosts))


def is_local(host: str) -> bool:
    """Whether ``host`` can be reached from this machine only (a loopback name or address)."""
    return host.strip("[]").lower() in LOCAL_HOSTS


def exposed_host_warning(host: str) -> str | None:
    """The warning for binding to ``host``: None for a local host."""
    if is_local(host):
        return None
    return (f"aiqc ui: --host {host} lets other machines reach the dashboard, which has no authentication: "
            "anyone who can reach this port can read every queue, job, hyperparameter and error in the database. "
            f"Bind to {DEFAULT_HOST} (the default) unless the network is trusted.")


def url_of(host: str, port: int) -> str:
    """The URL a browser opens for the app bound to ``host``:``port``."""
    bare = host.strip("[]")
    return f"http://[{bare}]:{port}/" if ":" in bare else f"http://{bare}:{port}/"


def _check_address(host: Any, port: Any) -> None:
    if not isinstance(host, str) or not host.strip() or any(c.isspace() for c in host):
        raise ValidationError.expected("host", "a host name or IP address such as 127.0.0.1", host)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValidationError.expected("port", "a port number between 1 and 65535", port)


def serve(db: str | os.PathLike | None = None, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          read_only: bool = True, announce: Callable[[str], None] | None = None) -> None:
    """Run the dashboard over ``db`` on ``host``:``port`` until Ctrl-C (uvicorn). A host other
    than 127.0.0.1, localhost or ::1 is served with a warning (logged) that the app has no
    authentication. ``announce`` receives the line that says where it serves (default: logged)."""
    _check_address(host, port)
    require_extra()
    warning = exposed_host_warning(host)
    if warning:
        logger.warning("%s", warning)
    app = make_app(db, read_only=read_only, allowed_hosts=LOCAL_HOST_NAMES if warning is None else None)
    from aiqc.database import current_url

    line = (f"aiqc ui: {url_of(host, port)}  (database {current_url().display}"
            f"{', read-only' if read_only else ''}; Ctrl-C stops it)")
    (announce or logger.info)(line)
    import uvicorn

    uvicorn.run(app, host=host.strip("[]"), port=port, log_level="warning")
