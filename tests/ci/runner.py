"""Just enough of a GitHub Actions runner and a GitLab runner to run our CI files' shell.

Not an emulator: it runs the steps of ``action.yml`` (or the script of the GitLab job) in
order with bash, the way the platforms do, after evaluating the handful of expression
forms those files use (``inputs.x``, ``steps.id.outputs.y``, ``github.event...``,
``github.token``, string literals, ``==``, ``&&``, ``||``). An expression it does not
understand raises, so the files cannot drift out of what is tested.

The install step (pip from the package index, a minute or more) is not run: the tests put
the configctl under test where that step would have put it (``$RUNNER_TEMP/configctl-venv``
or PATH).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
_PATH = re.compile(r"\b(inputs|steps|github|runner)((?:\.[A-Za-z0-9_-]+)+)")
_ALLOWED = re.compile(r"^(?:\s|_ctx\(\d+\)|'[^']*'|==|!=|and|or|not|\(|\))*$")


@dataclass
class StepResult:
    name: str
    returncode: int
    stdout: str
    stderr: str


@dataclass
class JobResult:
    steps: list[StepResult] = field(default_factory=list)
    summary: str = ""

    @property
    def failed(self) -> bool:
        return any(s.returncode != 0 for s in self.steps)

    @property
    def stdout(self) -> str:
        return "".join(s.stdout for s in self.steps)

    def annotations(self) -> list[str]:
        return [line for line in self.stdout.splitlines() if line.startswith(("::error ", "::warning "))]


def evaluate(expr: str, context: dict[str, Any]) -> Any:
    """A GitHub expression of the forms our files use, against ``context``."""
    lookups: list[str] = []

    def lookup(match: re.Match[str]) -> str:
        lookups.append(match.group(0))
        return f"_ctx({len(lookups) - 1})"

    text = _PATH.sub(lookup, expr).replace("&&", " and ").replace("||", " or ")
    if not _ALLOWED.match(text):
        raise ValueError(f"expression the test runner does not understand: {expr!r}")

    def _ctx(i: int) -> Any:
        value: Any = context
        for part in lookups[i].split("."):
            value = value.get(part, "") if isinstance(value, dict) else ""
        return value

    return eval(text, {"__builtins__": {}}, {"_ctx": _ctx})  # noqa: S307 - checked against _ALLOWED above


def substitute(text: str, context: dict[str, Any]) -> str:
    def one(match: re.Match[str]) -> str:
        value = evaluate(match.group(1), context)
        return "" if value is None else str(value)

    return _EXPR.sub(one, text)


def _condition(raw: str, context: dict[str, Any]) -> bool:
    expr = raw.strip()
    if expr.startswith("${{"):
        expr = _EXPR.sub(lambda m: m.group(1), expr)
    return bool(evaluate(expr, context))


def _outputs(path: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if "=" in line:
            name, value = line.split("=", 1)
            found[name] = value
    return found


def run_action(
    action_yml: Path,
    *,
    workspace: Path,
    runner_temp: Path,
    inputs: dict[str, str],
    event: dict[str, Any],
    env: dict[str, str],
    skip: tuple[str, ...] = ("Install configctl",),
) -> JobResult:
    """Run a composite action's steps in ``workspace`` like a pull-request job would."""
    action = yaml.safe_load(action_yml.read_text(encoding="utf-8"))
    event_path = runner_temp / "event.json"
    event_path.write_text(json.dumps(event), encoding="utf-8")
    summary = runner_temp / "step-summary.md"
    summary.touch()
    token = env.get("GITHUB_TOKEN", "")
    context: dict[str, Any] = {"github": {"event": event, "token": token}, "runner": {"temp": str(runner_temp)}, "steps": {}}
    resolved: dict[str, str] = {}
    for name, spec in action.get("inputs", {}).items():
        default = str(spec.get("default", ""))
        resolved[name] = inputs.get(name, substitute(default, context))
    unknown = set(inputs) - set(resolved)
    assert not unknown, f"inputs the action does not declare: {unknown}"
    context["inputs"] = resolved
    result = JobResult()
    for n, step in enumerate(action["runs"]["steps"]):
        name = step.get("name", f"step {n}")
        if name in skip:
            continue
        if "if" in step and not _condition(str(step["if"]), context):
            continue
        output = runner_temp / f"output-{n}"
        output.touch()
        step_env = {
            **env,
            "GITHUB_ACTIONS": "true",
            "GITHUB_EVENT_PATH": str(event_path),
            "GITHUB_EVENT_NAME": "pull_request",
            "GITHUB_OUTPUT": str(output),
            "GITHUB_STEP_SUMMARY": str(summary),
            "GITHUB_WORKSPACE": str(workspace),
            "GITHUB_ACTION_PATH": str(action_yml.parent),
            "RUNNER_TEMP": str(runner_temp),
            **{k: substitute(str(v), context) for k, v in step.get("env", {}).items()},
        }
        script = runner_temp / f"step-{n}.sh"
        script.write_text(substitute(step["run"], context), encoding="utf-8")
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            cwd=workspace,
            env=step_env,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        result.steps.append(StepResult(name, done.returncode, done.stdout, done.stderr))
        if "id" in step:
            context["steps"][step["id"]] = {"outputs": _outputs(output)}
        if done.returncode != 0:
            break
    result.summary = summary.read_text(encoding="utf-8")
    return result


def run_gitlab_job(template: Path, job: str, *, workdir: Path, env: dict[str, str]) -> StepResult:
    """The job's ``script`` (not ``before_script``: the install) under bash, as GitLab runs it.

    Variables: the template's global ones, then the job's, then ``env`` (the project's
    CI/CD variables and the predefined ones), later winning.
    """
    doc = yaml.safe_load(template.read_text(encoding="utf-8"))
    variables = {**doc.get("variables", {}), **doc[job].get("variables", {})}
    script = "\n".join(doc[job]["script"])
    path = workdir.parent / f"{job}-script.sh"
    path.write_text(script, encoding="utf-8")
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(path)],
        cwd=workdir,
        env={**{k: str(v) for k, v in variables.items()}, **env, "GITLAB_CI": "true"},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    return StepResult(job, done.returncode, done.stdout, done.stderr)


def configctl_venv(runner_temp: Path) -> None:
    """Put the configctl under test where the action's install step puts its own."""
    bin_dir = runner_temp / "configctl-venv/bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = Path(sys.executable).parent / "configctl"
    os.symlink(script, bin_dir / "configctl")
