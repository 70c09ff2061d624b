"""Zoo weights fetched from a configurable source, verified against the card's sha256 and cached: a real HTTP server
on 127.0.0.1 (a free port, in a thread) serves them; download, cache hit (no second request), a corrupted download
and an interrupted one (the server closes the connection mid-body); a local folder as the source; and the wheel
without weights."""

import hashlib
import http.server
import shutil
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tfrecog import zoo

REPO = Path(__file__).resolve().parents[1]
NAME = "vae-frey"  # the zoo's smallest weights file (1.4 MB)


class Server:
    """http.server serving `root` (GET /weights/FILE) in a thread; `mode` 'ok', 'corrupt' (one byte flipped) or
    'interrupt' (the full Content-Length announced, half the body sent, then the connection closed)."""

    def __init__(self, root: Path):
        self.root, self.mode, self.requests = root, "ok", []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the http.server name
                server.requests.append(self.path)
                path = server.root / self.path.lstrip("/")
                if not path.is_file():
                    self.send_error(404)
                    return
                body = bytearray(path.read_bytes())
                if server.mode == "corrupt":
                    body[len(body) // 2] ^= 0xFF
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.mode == "interrupt":
                    self.wfile.write(bytes(body[: len(body) // 2]))
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(bytes(body))

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # port 0: a free port
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def served(tmp_path, monkeypatch):
    card = zoo.info(NAME)
    root = tmp_path / "served"
    (root / "weights").mkdir(parents=True)
    shutil.copy(zoo.weights_path(card), root / "weights" / card["weights"]["file"])  # the checkout's, verified
    server = Server(root)
    monkeypatch.setenv(zoo.URL_ENV, server.url)
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path / "cache"))
    yield server, card, tmp_path / "cache" / "zoo" / card["weights"]["file"]
    server.close()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_download_then_cache_hit_without_a_second_request(served):
    server, card, cached = served
    path = zoo.weights_path(card)
    assert path == cached and _sha256(path.read_bytes()) == card["weights"]["sha256"]
    assert server.requests == [f"/weights/{card['weights']['file']}"]
    model = zoo.load(NAME, compile=False)  # from the cache: still one request
    assert np.isfinite(model(np.full((2, 560), 0.5, np.float32)).numpy()).all()
    assert zoo.weights_path(card) == cached
    assert len(server.requests) == 1


def test_a_corrupted_download_is_refused_naming_both_checksums_and_not_cached(served):
    server, card, cached = served
    server.mode = "corrupt"
    body = bytearray((server.root / "weights" / card["weights"]["file"]).read_bytes())
    body[len(body) // 2] ^= 0xFF
    with pytest.raises(zoo.ZooError) as err:
        zoo.weights_path(card)
    message = str(err.value)
    assert card["weights"]["sha256"] in message and _sha256(bytes(body)) in message, message
    assert "refusing to load" in message and "\n" not in message
    assert not cached.exists()
    server.mode = "ok"  # the next call downloads again and succeeds
    assert _sha256(zoo.weights_path(card).read_bytes()) == card["weights"]["sha256"]
    assert len(server.requests) == 2


def test_an_interrupted_download_leaves_nothing_and_a_retry_succeeds(served):
    server, card, cached = served
    server.mode = "interrupt"
    with pytest.raises(zoo.ZooError, match="could not download http://127.0.0.1:.*nothing was cached"):
        zoo.weights_path(card)
    assert not cached.exists() and len(server.requests) == 1
    server.mode = "ok"
    assert _sha256(zoo.weights_path(card).read_bytes()) == card["weights"]["sha256"]


def test_a_cached_file_altered_later_is_downloaded_again(served):
    server, card, cached = served
    zoo.weights_path(card)
    cached.write_bytes(cached.read_bytes()[:1000])  # truncated in the cache
    assert _sha256(zoo.weights_path(card).read_bytes()) == card["weights"]["sha256"]
    assert len(server.requests) == 2


def test_a_missing_file_on_the_server_is_one_line(served):
    server, card, _ = served
    card = {**card, "weights": {**card["weights"], "file": "no-such.weights.h5"}}
    with pytest.raises(zoo.ZooError, match=r"could not download .*no-such.weights.h5 \(.*404"):
        zoo.weights_path(card)


def test_a_folder_source_and_no_source(tmp_path, monkeypatch):
    card = zoo.info(NAME)
    folder = tmp_path / "mirror"
    (folder / "weights").mkdir(parents=True)
    shutil.copy(zoo.weights_path(card), folder / "weights" / card["weights"]["file"])
    monkeypatch.setenv(zoo.URL_ENV, str(folder))
    assert zoo.weights_path(card) == folder / "weights" / card["weights"]["file"]
    blob = bytearray((folder / "weights" / card["weights"]["file"]).read_bytes())
    blob[100] ^= 0xFF
    (folder / "weights" / card["weights"]["file"]).write_bytes(bytes(blob))
    with pytest.raises(zoo.ZooError, match=f"sha256 {_sha256(bytes(blob))} .*expected {card['weights']['sha256']}"):
        zoo.weights_path(card)
    # No source at all: an installed copy without the checkout, and no TFRECOG_ZOO_URL.
    monkeypatch.delenv(zoo.URL_ENV)
    monkeypatch.setattr(zoo, "zoo_dir", lambda: tmp_path / "installed")
    if (Path(zoo.__file__).parent / "_zoo_source.txt").exists():
        pytest.skip("this tfrecog was installed from a checkout: its zoo/ is the recorded default source")
    with pytest.raises(zoo.ZooError, match="set TFRECOG_ZOO_URL to an HTTP"):
        zoo.weights_path(card)


@pytest.mark.slow
def test_the_wheel_ships_cards_and_recipes_but_no_weights(tmp_path):
    """`pip wheel . --no-deps --no-build-isolation` (2 s here; slow because it copies the tree)."""
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-w",
                           str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    wheel, = tmp_path.glob("tfrecog-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.endswith(".h5")]
    assert f"tfrecog/_zoo/{NAME}.json" in names and f"tfrecog/_zoo/recipes/{NAME}.json" in names
    assert "tfrecog_runtime/runtime.py" in names  # `pip install .` still installs the runtime too
    assert wheel.stat().st_size < 2e6
