"""Long commands say what they are doing: ``rc2 run``'s progress of quanta on stderr."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from rc2_platform.cli import main
from rc2_platform.cli.progress import describe_counts
from rc2_platform.execution.runner import RunOptions, run_graph
from rc2_platform_tests.execution.helpers import make_config, make_graph, make_repo


def _failing_setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    repo = tmp_path / "repo"
    butler, raws = make_repo(repo)
    butler.close()
    graph = tmp_path / "g.qgraph"
    make_graph(graph, raws, configs={"a": {"fail_on": [{"detector": 2}]}})
    config = tmp_path / "exec.yaml"
    config.write_text(json.dumps(make_config().model_dump(mode="json")))
    return repo, graph, config


def test_run_reports_progress_per_settled_job(tmp_path: Path) -> None:
    repo, graph, _ = _failing_setup(tmp_path)
    seen: list[dict[str, int]] = []
    options = RunOptions(progress=lambda counts: seen.append(dict(counts)))
    run_graph(graph, repo, config=make_config(), options=options)
    assert seen[0]["pending"] == 7 and sum(seen[0].values()) == 7
    finals = [c["succeeded"] + c["failed"] + c["blocked"] for c in seen]
    assert finals == sorted(finals) and finals[-1] == 7
    assert seen[-1]["failed"] == 1 and seen[-1]["blocked"] == 2


def test_cli_run_draws_the_bar_on_stderr_and_json_stays_clean(tmp_path: Path) -> None:
    repo, graph, config = _failing_setup(tmp_path)
    args = ["run", str(repo), str(graph), "--execution-config", str(config)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 3, result.output
    assert "quanta (1 failed, 2 blocked)" in result.stderr and "7/7" in result.stderr
    assert "quanta (" not in result.stdout
    restart = CliRunner().invoke(main, ["restart", str(repo), "u/test/run1", "--json"])
    assert restart.exit_code == 3, restart.output
    assert json.loads(restart.stdout)["counts"]["failed"] == 1
    assert "quanta" not in restart.stderr


def test_describe_counts_names_only_states_worth_a_look() -> None:
    assert describe_counts({"pending": 3, "succeeded": 4}) == "quanta"
    text = describe_counts({"failed": 2, "blocked": 0, "running": 1, "succeeded": 5})
    assert text == "quanta (2 failed, 1 running)"
