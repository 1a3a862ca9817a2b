"""Chaos: SIGKILL during save and during ModelCheckpoint (50 times each) never leaves a
file that is not the old or a new model; Ctrl-C at random moments of fit, predict and
evaluate (50 times each) leaves fit at a completed step and the next call right.

The five agents (tests/chaos/agents.py) run at once, in their own processes, so a stray
signal can never reach the test runner.
"""
import json
import os
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRIALS = 50


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    processes = {}
    for kind in ("save", "checkpoint", "fit", "predict", "evaluate"):
        directory = tmp_path_factory.mktemp(kind)
        processes[kind] = subprocess.Popen(
            [sys.executable, "-m", "tests.chaos.agents", kind, str(TRIALS), str(directory)],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = {}
    deadline = time.monotonic() + 300          # a hang is caught by the agents' watchdogs
    for kind, process in processes.items():
        try:
            out, err = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            results[kind] = {"hung": True, "stderr": err[-2000:]}
            continue
        lines = out.strip().splitlines()
        try:
            results[kind] = json.loads(lines[-1])
        except (IndexError, ValueError):
            results[kind] = {"died": process.returncode, "stderr": err[-2000:]}
    return results


@pytest.mark.parametrize("kind", ["save", "checkpoint"])
def test_kill_9_always_leaves_the_old_or_a_new_model(outcomes, kind):
    counts = outcomes[kind]
    assert "kills" in counts, counts
    assert counts["kills"] == TRIALS and counts["corrupt"] == 0 and not counts["errors"], counts
    assert counts["old"] + counts["new"] == TRIALS
    # the kills did land mid-write, and saves did complete in between
    assert counts["killed_mid_write"] > 0 and counts["new"] > 0, counts
    assert counts.get("stale_temps_left", 0) == 0, counts


def test_ctrl_c_during_fit_leaves_a_completed_step(outcomes):
    counts = outcomes["fit"]
    assert counts.get("trials") == TRIALS and not counts.get("hung"), counts
    assert counts["mid_step"] == 0, counts
    assert counts["at_a_completed_step"] == TRIALS
    assert counts["next_fit_right"] == TRIALS and counts["next_predict_right"] == TRIALS
    assert counts["interrupted"] > TRIALS // 2 and len(counts["steps_seen"]) > 2, counts


def test_ctrl_c_during_predict_leaves_the_next_call_right(outcomes):
    counts = outcomes["predict"]
    assert counts.get("trials") == TRIALS and not counts.get("hung"), counts
    assert not counts["errors"], counts
    assert counts["next_right"] == TRIALS and counts["next_small_right"] == TRIALS, counts
    assert counts["interrupted"] > TRIALS // 2


def test_ctrl_c_during_evaluate_leaves_the_next_call_right(outcomes):
    counts = outcomes["evaluate"]
    assert counts.get("trials") == TRIALS and not counts.get("hung"), counts
    assert not counts["errors"], counts
    assert counts["next_right"] == TRIALS and counts["next_predict_right"] == TRIALS, counts
    assert counts["interrupted"] > TRIALS // 2, counts
