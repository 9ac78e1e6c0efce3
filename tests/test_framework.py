"""The capstone framework: configuration files fail clearly, the gate says why, runs land in MLflow,
the command line's exit code is the gate's decision, and two processes give one process's metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from labkit import framework, tracking
from labkit.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.toml")) + sorted((ROOT / "configs").glob("*.yaml"))
RUN_CONFIGS = [p for p in CONFIGS if p.parent.name == "configs"]

SMALL = """
name = "small-tfidf"
[data]
train_domains = ["tweets"]
test_domains = ["tweets", "nyt"]
train_n = 60
test_n = 40
[model]
method = "tfidf"
[evaluation]
seeds = [0, 1, 2]
n_boot = 200
latency_sentences = 3
[gate]
min_f1 = 0.0
beat_majority = false
"""


@pytest.fixture
def store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("LABKIT_TRACKING_URI", uri)
    return uri


def test_the_shipped_configs_are_valid():
    assert len(RUN_CONFIGS) >= 3
    for path in RUN_CONFIGS:
        config = framework.load_config(path)
        assert config.model.method in framework.METHODS and len(config.evaluation.seeds) >= 3


@pytest.mark.parametrize("change, needle", [
    (("method = \"tfidf\"", "method = \"bert\""), "model.method"),
    (("train_n = 60", "train_n = 60\nepoch = 3"), "data.epoch: Extra inputs are not permitted"),
    (("\"nyt\"]", "\"news\"]"), "unknown domain 'news'"),
    (("seeds = [0, 1, 2]", "seeds = [0, 0, 1]"), "at least 3 different seeds"),
    (("min_f1 = 0.0", "min_f1 = 1.5"), "gate.min_f1"),
    (("min_f1 = 0.0", "min_f1_per_domain = { movie = 0.5 }"), "which data.test_domains does not test"),
    (("name = \"small-tfidf\"", "name = \"has space\""), "name"),
])
def test_a_bad_config_names_the_key_and_the_problem(change, needle):
    with pytest.raises(framework.ConfigError) as err:
        framework.parse_config(SMALL.replace(*change), source="x.toml")
    assert needle in str(err.value) and "x.toml" in str(err.value)


def test_unreadable_or_missing_files_say_so(tmp_path):
    with pytest.raises(framework.ConfigError, match="not valid TOML"):
        framework.parse_config("name = ", source="broken.toml")
    with pytest.raises(framework.ConfigError, match="no configuration file at .*configs/"):
        framework.load_config(tmp_path / "absent.toml")
    (tmp_path / "c.json").write_text("{}")
    with pytest.raises(framework.ConfigError, match=r"\.toml, \.yaml or \.yml"):
        framework.load_config(tmp_path / "c.json")
    with pytest.raises(framework.ConfigError, match="missing|Field required"):
        framework.parse_config("name = 'x'\n[model]\nmethod = 'tfidf'\n")


def test_yaml_and_toml_describe_the_same_run():
    import yaml, tomllib
    raw = tomllib.loads(SMALL)
    assert framework.parse_config(yaml.safe_dump(raw), "yaml") == framework.parse_config(SMALL)


def _result(f1s: dict, latency: float, seeds_done=(0, 1, 2), gate: str = "") -> framework.RunResult:
    config = framework.parse_config(SMALL.replace("min_f1 = 0.0\nbeat_majority = false", gate or
                                                  "min_f1 = 0.6\nmax_latency_ms = 2.0"))
    domains = {d: {"f1": f, "f1_low": f - .05, "f1_high": f + .05, "majority": .3, "vs_majority": f - .3,
                   "vs_majority_low": f - .35, "vs_majority_high": f - .25} for d, f in f1s.items()}
    return framework.RunResult(config, domains, list(seeds_done), latency, 1.0, 2.0, 10, "h", "cpu", 1, 0.0)


def test_the_gate_promotes_only_when_every_check_passes_and_says_why():
    assert framework.gate(_result({"tweets": .7, "nyt": .65}, 1.0))[0] == "promote"
    decision, reasons = framework.gate(_result({"tweets": .7, "nyt": .55}, 1.0))
    assert decision == "reject" and any(r.startswith("FAIL: nyt: F1 0.550 < 0.600") for r in reasons)
    decision, reasons = framework.gate(_result({"tweets": .7, "nyt": .65}, 3.0))
    assert decision == "reject" and "FAIL: latency 3.00 ms > 2 ms" in reasons
    decision, reasons = framework.gate(_result({"tweets": .7, "nyt": .65}, 1.0, seeds_done=(0,)))
    assert decision == "reject" and any("1 of 3 seeds" in r for r in reasons)
    decision, reasons = framework.gate(_result({"tweets": .7, "nyt": .63}, 1.0, gate="min_f1 = 0.6\non_lower_bound = true"))
    assert decision == "reject" and "FAIL: nyt: F1 interval's lower end 0.580 < 0.600" in reasons
    decision, reasons = framework.gate(_result({"tweets": .7, "nyt": .32}, 1.0, gate="min_f1 = 0.0"))
    assert decision == "reject" and any(r.startswith("FAIL: nyt: F1 − majority") for r in reasons)


def test_a_run_is_recorded_in_mlflow_and_compared(store):
    config = framework.parse_config(SMALL)
    result = framework.run(config, log=lambda m: None)
    assert result.seeds_done == [0, 1, 2] and set(result.domains) == {"tweets", "nyt"}
    for r in result.domains.values():
        assert r["f1_low"] <= r["f1"] <= r["f1_high"] and r["vs_majority_low"] <= r["vs_majority"] <= r["vs_majority_high"]
    run_id = tracking.log_run(result, SMALL)
    table = tracking.runs("transfer-lab")
    row = table[table.run_id == run_id].iloc[0]
    assert row["name"] == "small-tfidf" and row["decision"] == result.decision == "promote"
    assert row["f1.nyt"] == pytest.approx(result.domains["nyt"]["f1"])
    assert row["data_hash"] == result.data_hash and row["commit"] != ""
    again = framework.run(config, log=lambda m: None)
    assert again.domains == result.domains and again.data_hash == result.data_hash   # reproducible


def test_the_command_line_exit_code_is_the_decision(store, tmp_path, capsys):
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text(SMALL)
    bad.write_text(SMALL.replace("min_f1 = 0.0", "min_f1 = 0.99"))
    assert main(["run", str(good), "--json", str(tmp_path / "out.json")]) == 0
    assert json.loads((tmp_path / "out.json").read_text())["decision"] == "promote"
    assert main(["run", str(bad)]) == 3
    assert "FAIL: tweets: F1" in capsys.readouterr().out
    bad.write_text(SMALL.replace("[gate]", "[gates]"))
    assert main(["run", str(bad)]) == 2
    assert "gates: Extra inputs are not permitted" in capsys.readouterr().err
    assert main(["runs"]) == 0
    assert "small-tfidf" in capsys.readouterr().out


HEAD = SMALL.replace('method = "tfidf"', 'method = "minilm_head"\nepochs = 5\nlr = 0.01\nbatch_size = 16')


def test_two_processes_under_accelerate_give_the_metrics_of_one(store, tmp_path):
    """Data parallel: ``accelerate launch --num_processes 2`` (gloo on the CPU) trains the head with
    each process taking half of every batch; the test metrics equal one process's."""
    cfg = tmp_path / "head.toml"
    cfg.write_text(HEAD)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29517"]
    for how, prefix in (("one", [sys.executable]), ("two", launcher)):
        subprocess.run([*prefix, "-m", "labkit", "run", str(cfg), "--json", str(tmp_path / f"{how}.json")],
                       check=True, env=env, timeout=300, cwd=ROOT)
    one, two = (json.loads((tmp_path / f"{h}.json").read_text()) for h in ("one", "two"))
    assert (one["processes"], two["processes"]) == (1, 2)
    f1 = lambda r: {k: v for k, v in r["metrics"].items() if k.startswith(("f1", "vs_majority"))}
    assert f1(two) == pytest.approx(f1(one), abs=1e-9)
    names = tracking.runs("transfer-lab")["name"].tolist()
    assert names.count("small-tfidf") == 2          # each run recorded once, by the first process only


def test_paired_compares_two_runs_on_the_same_test_sentences():
    config = framework.parse_config(SMALL)
    tfidf = framework.run(config, log=lambda m: None)
    vader = framework.run(config.model_copy(update={"model": framework.ModelConfig(method="vader")}), log=lambda m: None)
    diff, low, high = framework.paired(tfidf, vader, "nyt", n_boot=200)
    assert low <= diff <= high
    assert diff == pytest.approx(tfidf.domains["nyt"]["f1"] - vader.domains["nyt"]["f1"])
    assert framework.paired(tfidf, tfidf, "nyt", n_boot=200) == (0.0, 0.0, 0.0)
    other = framework.run(framework.parse_config(SMALL.replace("test_n = 40", "test_n = 30")), log=lambda m: None)
    with pytest.raises(ValueError, match="did not score the same nyt test sentences"):
        framework.paired(tfidf, other, "nyt")
