"""``skier serve``: a small, read-only web app over the run store (Starlette, served by uvicorn).

It lists runs with their status, draws their learning curves (an SVG chart drawn by the app's
own script, no CDN, no third-party JavaScript), polls the store every second so new epochs of
a training run appear without a reload, overlays the curves of the runs you select, and shows
the HTML report of any run. Only GET requests; static files only from this package's
``static/`` folder; bound to 127.0.0.1 unless told otherwise (and then only for the host names
it was bound to, so that a web page elsewhere cannot reach it by DNS rebinding).

>>> from starlette.testclient import TestClient            # doctest: +SKIP
>>> client = TestClient(create_app("sqlite:///runs/skier.db"))   # doctest: +SKIP
>>> client.get("/api/runs").json()["runs"][0]["status"]     # doctest: +SKIP
'running'
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

from skier.errors import SkierError, StoreError, problem
from skier.record import RUN_STATUSES, RunRecord, RunStore

__all__ = ["STATIC_DIR", "create_app", "serve"]

STATIC_DIR = Path(__file__).resolve().parent / "static"

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
# The app's own pages: scripts, styles and data only from itself.
_APP_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# A report page: inline CSS and data-URI figures, no scripts at all.
_REPORT_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)


def _number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _run_json(r: RunRecord) -> dict[str, Any]:
    return {
        "id": r.id,
        "name": r.name,
        "kind": r.kind,
        "status": r.status,
        "parent_id": r.parent_id,
        "created_at": r.created_at.isoformat(),
        "finished_at": r.finished_at.isoformat() if r.finished_at else None,
        "epochs_done": r.epochs_done,
        "best_epoch": r.best_epoch,
        "monitor": r.monitor,
        "best_value": _number(r.best_value),
        "test_metrics": {k: _number(v) for k, v in r.test_metrics.items()},
        "stop_reason": r.stop_reason,
        "duration_s": _number(r.duration_s),
    }


def _int_param(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise StoreError(problem(name, f"an integer from {low} to {high}", raw)) from None
    if not low <= value <= high:
        raise StoreError(problem(name, f"an integer from {low} to {high}", value))
    return value


def create_app(store_url: str, *, allowed_hosts: list[str] | None = None) -> Any:
    """The dashboard as an ASGI app over the store at ``store_url`` (read-only).

    ``allowed_hosts``: Host header names accepted (default: any); ``serve`` passes the loopback
    names when it listens on a loopback address.
    """
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.requests import Request
    from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    store = RunStore(store_url)

    def secure(response: Response, policy: str = _APP_POLICY) -> Response:
        response.headers["Content-Security-Policy"] = policy
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response

    def error(exc: SkierError, status: int) -> Response:
        return secure(JSONResponse({"error": str(exc).splitlines()[0]}, status_code=status))

    def index(request: Request) -> Response:
        return secure(FileResponse(STATIC_DIR / "index.html", media_type="text/html"))

    def runs(request: Request) -> Response:
        params = request.query_params
        try:
            limit = _int_param(params, "limit", 200, 1, 5000)
            status = params.get("status") or None
            if status is not None and status not in RUN_STATUSES:
                raise StoreError(problem("status", f"one of {list(RUN_STATUSES)}", status))
            records = store.list_runs(limit=limit, status=status, kind=params.get("kind") or None)
        except SkierError as exc:
            return error(exc, 400)
        return secure(JSONResponse({"runs": [_run_json(r) for r in records]}))

    def metrics(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        try:
            after = _int_param(request.query_params, "after", 0, 0, 10**9)
            record = store.get_run(run_id)
            history = store.metrics_of([run_id], after_epoch=after)[run_id]
        except SkierError as exc:
            return error(exc, 404 if "run id" in str(exc) else 400)
        keys = [k for k in history.keys if k != "epoch"]
        return secure(
            JSONResponse(
                {
                    "run": _run_json(record),
                    "epochs": [int(e) for e in history.column("epoch")],
                    "metrics": {k: [_number(v) for v in history.column(k)] for k in keys},
                }
            )
        )

    def report(request: Request) -> Response:
        from skier.report.build import render_run_report
        from skier.report.views import load_view

        run_id = request.path_params["run_id"]
        try:
            store.get_run(run_id)  # only runs of this store, never a path from the URL
            page = render_run_report(load_view(run_id, store=store))
        except SkierError:
            return secure(HTMLResponse("run not found", status_code=404), _REPORT_POLICY)
        return secure(HTMLResponse(page), _REPORT_POLICY)

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/api/runs", runs, methods=["GET"]),
        Route("/api/runs/{run_id}/metrics", metrics, methods=["GET"]),
        Route("/runs/{run_id}/report", report, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR, follow_symlink=False)),
    ]
    middleware = []
    if allowed_hosts:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        try:
            yield
        finally:
            store.close()

    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.store = store
    return app


def serve(
    store_url: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    echo: Callable[[str], None] | None = None,
) -> None:
    """Serve the dashboard until interrupted (Ctrl-C).

    >>> serve("sqlite:///runs/skier.db", port=8765)   # doctest: +SKIP
    """
    try:
        import starlette  # noqa: F401 - checked here so a missing one is one line, not a traceback
        import uvicorn
    except ImportError as exc:
        raise SkierError(
            f"skier serve must have its web framework installed; got no {exc.name}. "
            "Install it: pip install 'skier[serve]'."
        ) from None
    with RunStore(store_url) as probe:  # a wrong URL is one line now, not a 500 later
        probe.list_runs(limit=1)
    loopback = host in _LOOPBACK
    allowed = ["127.0.0.1", "localhost", "::1", "[::1]"] if loopback else None
    app = create_app(store_url, allowed_hosts=allowed)
    say = echo or print
    shown = f"[{host}]" if ":" in host else host
    safe = RunStore(store_url).safe_url
    say(f"skier dashboard: http://{shown}:{port}/  (store {safe}; Ctrl-C stops)")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
