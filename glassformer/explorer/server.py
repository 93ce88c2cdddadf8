"""The explorer's web server: a Starlette (ASGI) app on uvicorn, serving the page (``static/``, plain ES
modules and CSS, no build step, nothing fetched from the network) and the JSON API of :class:`Explorer`.

    GET  /                 the page                      GET  /api/info      the model(s)
    GET  /static/<file>    the page's modules and CSS    POST /api/run       every view for one input
    POST /api/path         the forward pass's outline    POST /api/step      one step's equations and numbers
    POST /api/generate     one sampled token (KV cache)  GET  /api/program   the RASP program
    POST /api/sop          one s-op on the input         POST /api/decompile a trained model's program

A bad request gets a 4xx with ``{"error": message}`` (400 malformed or invalid input, 404 unknown route,
405 wrong method, 413 too large); an unexpected failure a 500 with the same shape, and the server keeps
serving. Static files are served from the package's own folder only (Starlette's ``StaticFiles`` refuses
any path that resolves outside it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sys
import threading
import webbrowser
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from glassformer.errors import GlassformerError, InputError
from glassformer.explorer.api import Explorer

STATIC = Path(__file__).resolve().parent / "static"
MAX_BODY = 1 << 20  # 1 MiB: far more than any input the page sends
log = logging.getLogger("glassformer.explorer")


def create_app(explorer: Explorer) -> Starlette:
    """The ASGI app serving ``explorer``'s model."""

    def post(method):
        async def endpoint(request: Request) -> JSONResponse:
            declared = request.headers.get("content-length", "0")
            if declared.isdigit() and int(declared) > MAX_BODY:  # refused before it is read
                return _error(413, f"request body is {declared} bytes; the limit is {MAX_BODY}")
            raw = await request.body()
            if len(raw) > MAX_BODY:
                return _error(413, f"request body is {len(raw)} bytes; the limit is {MAX_BODY}")
            try:
                body = json.loads(raw or b"null")
            except (ValueError, UnicodeDecodeError) as e:
                return _error(400, f"malformed JSON: {e}")
            return await _answer(method, body)

        return endpoint

    def get(method):
        async def endpoint(request: Request) -> JSONResponse:
            return await _answer(method)

        return endpoint

    async def index(request: Request) -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, exc.detail if exc.status_code != 404 else f"no such route: {request.url.path}")

    routes = [
        Route("/", index),
        Route("/api/info", get(explorer.info)),
        Route("/api/program", get(explorer.program)),
        *(Route(f"/api/{name}", post(getattr(explorer, name)), methods=["POST"]) for name in ("run", "path", "step", "generate", "sop", "decompile")),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error})


# Every request's model work runs on this one thread. PyTorch's intra-op thread pool (OpenMP) keeps one team of
# workers per calling thread, and idle teams spin: with the ASGI thread pool's many threads and torch threads > 1,
# a request measured 0.7-2.4 s instead of 20-50 ms (bench/bench_explorer.py). One thread also serialises the
# forward passes, whose hooks are attached to the shared model while they run; other requests wait in line.
MODEL_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="explorer-model")


async def _answer(method, *args) -> JSONResponse:
    try:
        return JSONResponse(await asyncio.get_running_loop().run_in_executor(MODEL_THREAD, method, *args))
    except GlassformerError as e:
        return _error(400, str(e))
    except Exception as e:  # a bug must not take the server down: report it, keep serving
        log.exception("explorer: request failed")
        return _error(500, f"internal error ({type(e).__name__}): {e}")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def bind(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free port the OS picks)."""
    if not 0 <= port <= 65535:
        raise InputError(f"--port must be in 0..65535, got {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"


class Server:
    """uvicorn serving ``explorer`` on an already-bound socket; ``run()`` blocks until Ctrl-C (or ``stop()``),
    ``start()`` runs it in a background thread (tests, scripts)."""

    def __init__(self, explorer: Explorer, host: str = "127.0.0.1", port: int = 0, quiet: bool = True):
        import uvicorn

        self.sock = bind(host, port)
        self.url = url_of(self.sock)
        config = uvicorn.Config(create_app(explorer), log_level="warning" if quiet else "info", access_log=not quiet,
                                lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread: threading.Thread | None = None

    def run(self) -> None:
        self.server.run(sockets=[self.sock])

    def start(self) -> Server:
        # uvicorn installs its Ctrl-C handlers only in the main thread, so a background server leaves them alone
        self.thread = threading.Thread(target=self.run, daemon=True, name="explorer-server")
        self.thread.start()
        while not self.server.started and self.thread.is_alive():
            self.thread.join(0.02)
        if not self.server.started:
            raise RuntimeError("the explorer server did not start")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(10)
        self.sock.close()


def serve(explorer: Explorer, host: str = "127.0.0.1", port: int = 0, open_browser: bool = True) -> None:
    """Serve until Ctrl-C: print the address, open the browser (unless told not to), stop cleanly."""
    server = Server(explorer, host, port)
    print(f"glassformer explore: serving {explorer.subject.name} at {server.url}  (Ctrl-C stops)", flush=True)
    if open_browser:
        threading.Timer(0.5, lambda: webbrowser.open(server.url)).start()
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn has already shut down gracefully; the interrupt is how we were asked
        pass
    finally:
        server.sock.close()
        print("glassformer explore: stopped", file=sys.stderr, flush=True)
