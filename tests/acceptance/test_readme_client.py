"""The README's SDK and OpenFeature examples, run as written (issue 9, item 6).

The README's first command applies ``configs-example`` on the embedded default; that must
leave a snapshot folder a ``ConfigClient`` reads with no server running. This test does the
same in a copy (as its own git repository, the way a user's config repo is) and then runs
each ```python block marked ``<!-- readme-test: NAME -->`` in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support.cli import configctl
from tests.support.gitrepo import GitRepo

ROOT = Path(__file__).resolve().parents[2]


def readme_block(name: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(rf"<!-- readme-test: {name} -->\n```python\n(.*?)```", text, re.S)
    assert match is not None, f"README has no python block marked readme-test: {name}"
    return match.group(1)


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding configs-example/ after the README's first command's `apply`."""
    base = tmp_path_factory.mktemp("readme")
    repo = base / "configs-example"
    shutil.copytree(ROOT / "configs-example", repo, ignore=shutil.ignore_patterns(".configctl"))
    GitRepo(repo).git("init", "-q", "-b", "main")
    GitRepo(repo).commit("first")
    result = configctl("apply", "--repo", "configs-example", cwd=base, env={"CONFIGCTL_DB": "", "CONFIGCTL_SNAPSHOT_DIR": ""})
    assert result.returncode == 0, result.stderr
    snapshots = repo / ".configctl" / "snapshots"
    assert sorted(p.name for p in snapshots.glob("checkout.*.json")) == [
        "checkout.dev.json", "checkout.production.json", "checkout.staging.json",
    ]  # fmt: skip
    doc = json.loads((snapshots / "checkout.production.json").read_text())
    assert doc["version"] == 1
    assert [r["name"] for r in doc["rollouts"]] == ["adyen-in-germany", "one-page-checkout"]
    assert doc["values"]["database"]["host"] == "checkout-db.prod.internal"
    return base


def run_python(code: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONFIGCTL_")}
    env["CONFIGCTL_CACHE_DIR"] = str(cwd / "lkg")
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_readme_sdk_example_runs_on_the_snapshot_folder_apply_left(applied: Path) -> None:
    out = run_python(readme_block("sdk"), applied).splitlines()
    assert out[0] == "checkout-db.prod.internal 50 {'max': 50, 'min': 1}"
    assert out[1] == "fallback"
    assert out[2:6] == ["adyen", "stripe", "stripe", "True"]
    assert out[6] == "1 True snapshot_dir"
    value, rollout, reason, bucket, file, line = out[7].split()
    assert (value, rollout, reason, file, line) == ("adyen", "adyen-in-germany", "split", "apps/checkout/envs/production.yaml", "7")
    assert int(bucket) < 2500


def test_readme_openfeature_example_runs(applied: Path) -> None:
    out = run_python(readme_block("openfeature"), applied).splitlines()
    assert out == ["True TARGETING_MATCH on", "False", "SPLIT", "50", "FLAG_NOT_FOUND"]


def test_apply_keeps_the_snapshot_folder_current(applied: Path, tmp_path: Path) -> None:
    """A second commit moves the folder to version 2; a deleted file comes back."""
    base = tmp_path / "copy"
    shutil.copytree(applied, base)
    repo = base / "configs-example"
    (repo / ".configctl" / "snapshots" / "billing.dev.json").unlink()
    prod = repo / "apps" / "checkout" / "envs" / "production.yaml"
    prod.write_text(prod.read_text().replace("replicas: 6", "replicas: 7"))
    GitRepo(repo).git("commit", "-qam", "more")
    result = configctl("apply", "--repo", repo, env={"CONFIGCTL_DB": "", "CONFIGCTL_SNAPSHOT_DIR": ""})
    assert result.returncode == 0, result.stderr
    snapshots = repo / ".configctl" / "snapshots"
    assert json.loads((snapshots / "checkout.production.json").read_text())["values"]["replicas"] == 7
    assert json.loads((snapshots / "checkout.production.json").read_text())["version"] == 2
    assert (snapshots / "billing.dev.json").is_file()
    # --db elsewhere: the embedded folder is not touched
    before = (snapshots / "checkout.production.json").read_bytes()
    assert configctl("apply", "--repo", repo, "--db", f"sqlite:///{tmp_path / 'other.db'}", env={"CONFIGCTL_SNAPSHOT_DIR": ""}).returncode == 0
    assert (snapshots / "checkout.production.json").read_bytes() == before


def test_status_app_env_without_redis_says_where_client_reports_are(applied: Path) -> None:
    env = {"CONFIGCTL_DB": "", "CONFIGCTL_REDIS": ""}
    text = configctl("status", "checkout", "production", "--repo", applied / "configs-example", env=env)
    assert text.returncode == 0, text.stderr
    assert "clients of checkout/production: unknown (client reports are in Redis: pass --redis or set CONFIGCTL_REDIS)" in text.stdout
    doc = json.loads(configctl("status", "checkout", "production", "--repo", applied / "configs-example", "-o", "json", env=env).stdout)
    assert doc["clients"] is None
    plain = json.loads(configctl("status", "--repo", applied / "configs-example", "-o", "json", env=env).stdout)
    assert "clients" not in plain
