"""BRODEN download against a local HTTP server (Range support): full, resumed, corrupt, offline."""

import hashlib
import io
import socket
import subprocess
import sys
import threading
import urllib.request
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from net2vec.data.broden import DatasetError
from net2vec.data.download import DownloadError, download_broden, main
from net2vec.run.pipeline import ensure_dataset

CONF = Path(__file__).resolve().parents[1] / "conf" / "data"


def make_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            "broden1_227/index.csv",
            "image,split,ih,iw,sh,sw,color,object,part,material,scene,texture\n"
            "a.jpg,train,227,227,113,113,,,,,1,\n",
        )
        archive.writestr(
            "broden1_227/label.csv",
            "number,name,category,frequency,coverage,syns\n1,street,scene(1),1,1.0,\n",
        )
        archive.writestr("broden1_227/images/blob.bin", bytes(range(256)) * 400)
    return buffer.getvalue()


class Server:
    """Serves `payload` at /broden1_227.zip; honours `Range: bytes=N-` unless told not to."""

    def __init__(self, payload: bytes, ranges: bool = True):
        self.payload, self.ranges, self.requests = payload, ranges, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append((self.path, self.headers.get("Range")))
                if self.path != "/data/broden1_227.zip":
                    self.send_error(404)
                    return
                start = 0
                header = self.headers.get("Range")
                if header and outer.ranges:
                    start = int(header.split("=")[1].split("-")[0])
                    if start >= len(outer.payload):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header(
                        "Content-Range",
                        f"bytes {start}-{len(outer.payload) - 1}/{len(outer.payload)}",
                    )
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(outer.payload) - start))
                self.end_headers()
                self.wfile.write(outer.payload[start:])

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/data/"
        threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def payload() -> bytes:
    return make_zip()


@pytest.fixture
def server(payload):
    served = Server(payload)
    yield served
    served.close()


def test_download_verify_unpack_then_skip(server, tmp_path):
    target = download_broden("broden1_227", tmp_path, base_url=server.url, progress=False)
    assert target == tmp_path / "broden1_227"
    assert (target / "index.csv").is_file() and len(
        (target / "images" / "blob.bin").read_bytes()
    ) == 102400
    assert server.requests == [("/data/broden1_227.zip", None)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broden1_227"]  # no zip, no .part left
    assert download_broden("broden1_227", tmp_path, base_url=server.url, progress=False) == target
    assert len(server.requests) == 1  # present: not fetched again


def test_resume_truncated_part(server, payload, tmp_path):
    half = len(payload) // 2
    (tmp_path / "broden1_227.zip.part").write_bytes(payload[:half])
    target = download_broden("broden1_227", tmp_path, base_url=server.url, progress=False)
    assert server.requests == [("/data/broden1_227.zip", f"bytes={half}-")]
    assert (target / "index.csv").is_file()


def test_server_without_range_support_restarts(payload, tmp_path):
    served = Server(payload, ranges=False)
    try:
        (tmp_path / "broden1_227.zip.part").write_bytes(b"stale bytes")
        target = download_broden("broden1_227", tmp_path, base_url=served.url, progress=False)
        assert (target / "index.csv").is_file()
    finally:
        served.close()


def test_complete_part_and_416(server, payload, tmp_path):
    (tmp_path / "broden1_227.zip.part").write_bytes(payload)
    target = download_broden("broden1_227", tmp_path, base_url=server.url, progress=False)
    assert (target / "index.csv").is_file() and server.requests[0][1] == f"bytes={len(payload)}-"


def test_corrupt_archive_and_wrong_digest(payload, tmp_path):
    served = Server(b"PK" + b"\x00" * 500)
    try:
        with pytest.raises(DownloadError, match="not a valid zip"):
            download_broden("broden1_227", tmp_path, base_url=served.url, progress=False)
        assert not (tmp_path / "broden1_227").exists()
    finally:
        served.close()
    good = Server(payload)
    try:
        with pytest.raises(DownloadError, match="sha256"):
            download_broden(
                "broden1_227", tmp_path / "b", base_url=good.url, sha256="0" * 64, progress=False
            )
    finally:
        good.close()


def test_offline_fails_fast_with_one_line(tmp_path, capsys, monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: connection refused
    attempts = []
    urlopen = urllib.request.urlopen
    monkeypatch.setattr(
        urllib.request, "urlopen", lambda *a, **k: attempts.append(a) or urlopen(*a, **k)
    )
    with pytest.raises(DownloadError) as error:
        download_broden(
            "broden1_227", tmp_path, base_url=f"http://127.0.0.1:{port}/data/", progress=False
        )
    assert len(attempts) == 1  # fails fast: one refused connection, no retries
    text = str(error.value)
    assert (
        "cannot reach" in text
        and f"unzip it to {tmp_path / 'broden1_227'}" in text
        and "data.root" in text
    )
    assert "\n" not in text
    assert (
        main(["broden1_227", "--dest", str(tmp_path), "--base-url", f"http://127.0.0.1:{port}/"])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot reach") and "\n" not in err


def test_unknown_release():
    with pytest.raises(DownloadError, match="unknown BRODEN release"):
        download_broden("broden2", "/nonexistent")


def test_broden_config_and_ensure_dataset(server, tmp_path):
    cfg = OmegaConf.create(
        {
            "paths": {"data_dir": str(tmp_path)},
            "network": {"input_size": 227},
            "data": OmegaConf.load(CONF / "broden.yaml"),
        }
    )
    assert cfg.data.release == "broden1_227" and cfg.data.root == f"{tmp_path}/broden1_227"
    assert cfg.data.download is False
    with pytest.raises(DatasetError, match="index.csv missing") as error:
        ensure_dataset(cfg.data)
    assert "python -m net2vec.data.download broden1_227" in str(error.value)
    cfg.data.download = True
    cfg.data.base_url = server.url
    assert ensure_dataset(cfg.data) == tmp_path / "broden1_227"
    assert (tmp_path / "broden1_227" / "index.csv").is_file()


def test_strict_verification_refuses_without_a_known_digest(server, payload, tmp_path, capsys):
    args = ["broden1_227", "--dest", str(tmp_path), "--base-url", server.url, "--verify", "strict"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --verify strict: no SHA-256") and "\n" not in err
    assert server.requests == []  # refused before fetching anything
    digest = hashlib.sha256(payload).hexdigest()
    assert main([*args, "--sha256", digest]) == 0
    assert (tmp_path / "broden1_227" / "index.csv").is_file()


def test_unpacking_into_a_non_empty_folder_is_one_line(server, tmp_path, capsys):
    (tmp_path / "broden1_227").mkdir()
    (tmp_path / "broden1_227" / "notes.txt").write_text("mine")
    assert main(["broden1_227", "--dest", str(tmp_path), "--base-url", server.url]) == 2
    err = capsys.readouterr().err.strip()
    assert "is not empty" in err and "\n" not in err
    assert (tmp_path / "broden1_227" / "notes.txt").read_text() == "mine"


def test_an_archive_that_is_not_broden_or_escapes_is_refused(tmp_path):
    for name, member in (("escape", "../evil.txt"), ("tables", "broden1_227/index.csv")):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr(member, "image,split\n")  # not the BRODEN columns
        served = Server(buffer.getvalue())
        try:
            with pytest.raises(DownloadError, match="not a BRODEN release|outside the archive"):
                download_broden("broden1_227", tmp_path / name, base_url=served.url, progress=False)
        finally:
            served.close()
        assert (
            not (tmp_path / name / "broden1_227").exists() and not (tmp_path / "evil.txt").exists()
        )


def test_unpack_folders_of_dead_processes_are_removed(server, tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    stale = tmp_path / f"broden1_227.tmp-{int(dead.stdout)}"
    (stale / "images").mkdir(parents=True)
    download_broden("broden1_227", tmp_path, base_url=server.url, progress=False)
    assert not stale.exists() and (tmp_path / "broden1_227" / "index.csv").is_file()
