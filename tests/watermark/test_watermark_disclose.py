"""Disclosing a key to a court's expert: a package of its own that recomputes the lists."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

from test_cli import run

from auditor.watermark.core import GreenList
from auditor.watermark.keys import key_id

KEY = bytes(range(50, 82))


def _config(tmp_path: Path) -> Path:
    key = tmp_path / "wm.key"
    key.write_text(KEY.hex() + "\n")
    key.chmod(0o600)
    (tmp_path / "tokenizer.json").write_text('{"stand-in": true}')
    cfg = tmp_path / "auditor.toml"
    cfg.write_text(f'[watermark]\ngamma = 0.3\nh = 2\ntokenizer = "tokenizer.json"\n'
                   f'[[watermark.keys]]\nid = "{key_id(KEY)}"\nfile = "wm.key"\n'
                   "valid_from = 2026-01-01T00:00:00Z\n")
    return cfg


def test_the_package_recomputes_the_key_id_and_every_green_list(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    out = tmp_path / "to-expert"
    res = run("--config", str(cfg), "watermark", "disclose", key_id(KEY), "--out", str(out),
              "--to", "Dr. Expert", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert KEY.hex() not in res.stdout + res.stderr
    key_file = out / f"watermark-key-{key_id(KEY)}.hex"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    scheme = json.loads((out / "scheme.json").read_text())
    assert scheme["gamma"] == 0.3 and scheme["h"] == 2 and scheme["disclosed_to"] == "Dr. Expert"
    assert KEY.hex() not in (out / "scheme.json").read_text()

    def script(*args: str) -> str:
        return subprocess.run([sys.executable, "-I", str(out / "recompute.py"), str(key_file),
                               *args], capture_output=True, text=True, check=True).stdout.strip()

    assert script("id") == key_id(KEY)
    g = GreenList(KEY, 1000, gamma=0.3, h=2)
    for window, token in (((3, 4), 5), ((9, 9), 0), ((0, 7), 999), ((1, 2), 17)):
        want = g.is_green(list(window), token)
        assert script("green", "2", "0.3", ",".join(map(str, window)), str(token)) == str(
            int(want))
    sums = (out / "SHA256SUMS").read_text()
    assert "recompute.py" in sums and key_file.name in sums and "tokenizer.json" in sums


def test_an_unknown_id_or_an_existing_folder_is_refused(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    res = run("--config", str(cfg), "watermark", "disclose", "0123456789abcdef", "--out",
              str(tmp_path / "x"), "--to", "E", cwd=tmp_path)
    assert res.returncode != 0 and "no watermark key 0123456789abcdef" in res.stderr
    assert "Traceback" not in res.stderr
    (tmp_path / "y").mkdir()
    res = run("--config", str(cfg), "watermark", "disclose", key_id(KEY), "--out",
              str(tmp_path / "y"), "--to", "E", cwd=tmp_path)
    assert res.returncode != 0 and "already exists" in res.stderr
