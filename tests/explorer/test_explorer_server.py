"""The explorer over real HTTP (uvicorn in a thread): the page and its modules are served, bad requests get
a 4xx with a message and never stop the server, no path reaches outside the static folder, several clients
at once each get their own answer, and `glassformer explore` stops cleanly on Ctrl-C."""

import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def call(server, path, body=None, raw=None, method=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(server.url.rstrip("/") + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data is not None else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers.get("content-type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("content-type", ""), e.read()


def test_page_and_modules_are_served(server):
    status, kind, body = call(server, "/")
    assert status == 200 and "text/html" in kind and b'type="module"' in body
    assert b"http" not in body.replace(b"http-equiv", b"")  # nothing fetched from the network
    for module in re.findall(rb'from "\./(views/\w+\.js|\w+\.js)"', (REPO / "glassformer/explorer/static/app.js").read_bytes()):
        status, kind, js = call(server, f"/static/{module.decode()}")
        assert status == 200 and "javascript" in kind and b"https://" not in js
    status, _, info = call(server, "/api/info")
    assert status == 200 and json.loads(info)["model"]["n_heads"] == 4


@pytest.mark.parametrize("path", [
    "/static/../server.py", "/static/%2e%2e/server.py", "/static/..%2fserver.py", "/static/%2e%2e%2fapi.py",
    "/static/views/../../session.py", "/static//etc/passwd", "/static/%2fetc%2fpasswd", "/../glassformer/explorer/server.py",
])
def test_no_path_reads_outside_the_static_folder(server, path):
    status, _, body = call(server, path)
    assert status in (400, 404)
    assert b"import" not in body and b"root:" not in body


@pytest.mark.parametrize("raw, status, message", [
    (b"{not json", 400, "malformed JSON"),
    (b"\xff\xfe", 400, "malformed JSON"),
    (json.dumps({"text": "1 2 z"}).encode(), 400, "'z' is not a token id"),
    (json.dumps({"text": "1", "extra": 1}).encode(), 400, "unknown field"),
    (json.dumps({"text": " ".join(["3"] * 40)}).encode(), 400, "context holds 16"),
    (b"[1, 2]", 400, "JSON object"),
])
def test_bad_requests_get_a_4xx_and_a_message(server, raw, status, message):
    got, kind, body = call(server, "/api/run", raw=raw)
    assert got == status and "application/json" in kind
    assert message in json.loads(body)["error"]
    assert call(server, "/api/run", {"text": "1 2"})[0] == 200  # still serving


def test_a_body_over_the_limit_is_refused_unread(server):
    import http.client

    host, port = server.sock.getsockname()[:2]
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.putrequest("POST", "/api/run")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(50 << 20))  # 50 MiB announced, none sent
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413 and "limit" in json.loads(response.read())["error"]
    conn.close()


def test_wrong_method_and_unknown_route(server):
    status, _, body = call(server, "/api/run")
    assert status == 405 and "error" in json.loads(body)
    status, _, body = call(server, "/api/nothing", {"text": "1"})
    assert status == 404 and "/api/nothing" in json.loads(body)["error"]


def test_several_clients_at_once(server, explorer):
    inputs = [" ".join(str((i * j) % 10) for j in range(1, 2 + i % 9)) for i in range(24)]
    expected = [explorer.run({"text": t, "ablate": [{"layer": 1, "head": i % 4}]})["predictions"] for i, t in enumerate(inputs)]

    def ask(i):
        status, _, body = call(server, "/api/run", {"text": inputs[i], "ablate": [{"layer": 1, "head": i % 4}]})
        return status, json.loads(body)["predictions"]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, range(len(inputs))))
    assert [a[0] for a in answers] == [200] * len(inputs)
    assert [a[1] for a in answers] == expected  # no request saw another's hooks


def test_cli_serves_until_ctrl_c(tmp_path, decoder):
    (tmp_path / "cfg.json").write_text(json.dumps(decoder.config.to_dict()))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "glassformer", "explore", str(tmp_path / "cfg.json"), "--no-browser"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line).group(0)
        with urllib.request.urlopen(url + "api/info", timeout=30) as r:
            assert json.loads(r.read())["model"]["kind"] == "random"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert "stopped" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_cli_refuses_bad_arguments(tmp_path, capsys):
    from glassformer.cli import main

    assert main(["explore", str(tmp_path / "missing"), "--no-browser"]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "cfg.json").write_text(json.dumps({"arch": "decoder", "d_model": 30, "n_heads": 4}))
    assert main(["explore", str(tmp_path / "cfg.json"), "--no-browser"]) == 2
    assert "d_model" in capsys.readouterr().err
    assert main(["explore", str(tmp_path / "cfg.json"), "--port", "70000", "--no-browser"]) == 2
