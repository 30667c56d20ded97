"""Closing the loop through the REST API: the local endpoint captures its traffic, nlp_monitor_local compares it with
the production model's training data, and drift starts a retraining run of nlp_local through the Asset
nlp_drift_detected_local; traffic like the training data starts none."""

import csv
import json
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import httpx

from tests.airflow.stack.conftest import REST_TIMEOUT, api_headers
from tests.airflow.stack.test_approval import wait_until
from tests.conftest import free_port, run_tasks

MONITOR = "nlp_monitor_local"
ASSET = "nlp_drift_detected_local"
# A short window and fewer pairs than the default: each phase's traffic is a minute apart and a few hundred pairs.
MONITOR_CONF = {"window_minutes": 1, "min_records": 100}
# Another topic, in much longer pairs: clinical notes instead of the generated data's short news-like sentences.
TOPIC = (
    "the patient presented with intermittent retrosternal chest pain radiating to the left arm",
    "an electrocardiogram showed nonspecific repolarisation abnormalities in the inferior leads",
    "troponin concentrations were measured at admission and again after six hours",
    "the cardiology consultant recommended dual antiplatelet therapy and a beta blocker",
    "echocardiography demonstrated preserved ejection fraction without regional wall motion abnormality",
    "the differential diagnosis included pulmonary embolism, aortic dissection and pericarditis",
    "anticoagulation was withheld pending computed tomography angiography of the thorax",
    "she was discharged with outpatient follow-up and a graded exercise stress test",
)


def generated_pairs(raw_data: Path) -> list[dict]:
    """The generated data's pairs, as a client sends them: what the production model was trained on."""
    pairs = []
    for split in ("train.tsv", "dev.tsv"):
        with (raw_data / split).open(newline="") as handle:
            rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
            next(rows)
            pairs += [{"sentence1": row[3], "sentence2": row[4]} for row in rows]
    return pairs


def shifted_pairs(count: int) -> list[dict]:
    """Long pairs of another topic: each sentence five clinical clauses, far past the training data's lengths."""
    rng = random.Random(5)
    return [
        {"sentence1": "; ".join(rng.sample(TOPIC, 5)) + ".", "sentence2": "; ".join(rng.sample(TOPIC, 5)) + "."}
        for _ in range(count)
    ]


def send(url: str, pairs: list[dict]) -> None:
    for start in range(0, len(pairs), 32):
        answer = httpx.post(f"{url}/invocations", json={"instances": pairs[start : start + 32]}, timeout=60)
        answer.raise_for_status()


def serve(model: Path, state: Path, capture: str, port: int) -> str:
    """The production model as the local endpoint, capturing every request (deploy-local, as nlp_local's deploy)."""
    run_tasks(
        "deploy-local",
        *("--model", str(model), "--state", str(state), "--port", str(port)),
        *("--capture-dir", capture, "--capture-sample-rate", "1"),
    )
    return f"http://127.0.0.1:{port}"


def stop(state: Path) -> None:
    """SIGTERM the endpoint: it flushes its capture and closes its files, which the monitor then reads."""
    run_tasks("stop-local", "--state", str(state))


def make_production(registry: Path, model: Path, work: Path) -> dict:
    """``model`` registered and promoted in the stack's registry: what nlp_monitor_local watches."""
    evaluation = work / "evaluation"
    evaluation.mkdir()
    (evaluation / "evaluation.json").write_text(json.dumps({"decision": "promote", "accuracy": 0.9, "f1": 0.9}))
    common = ("registry", "--registry", str(registry))
    entry = json.loads(
        run_tasks(
            *common,
            "--action",
            "register",
            "--model",
            str(model),
            "--evaluation",
            str(evaluation),
            "--status",
            "approved",
        ).stdout.splitlines()[-1]
    )
    return json.loads(run_tasks(*common, "--action", "promote", "--id", str(entry["id"])).stdout.splitlines()[-1])


class Rest:
    def __init__(self, url: str):
        self.url, self.headers = url, api_headers(url)

    def get(self, path: str, **params) -> dict:
        answer = httpx.get(f"{self.url}/api/v2/{path}", headers=self.headers, params=params, timeout=REST_TIMEOUT)
        answer.raise_for_status()
        return answer.json()

    def send(self, method: str, path: str, body: dict) -> dict:
        answer = httpx.request(
            method, f"{self.url}/api/v2/{path}", headers=self.headers, json=body, timeout=REST_TIMEOUT
        )
        answer.raise_for_status()
        return answer.json()

    def monitor(self, window_end: datetime) -> tuple[str, dict]:
        """A run of nlp_monitor_local whose window ends at ``window_end``, waited for: (run id, task states)."""
        run = self.send(
            "POST", f"dags/{MONITOR}/dagRuns", {"logical_date": window_end.isoformat(), "conf": MONITOR_CONF}
        )
        run_id = run["dag_run_id"]
        state = wait_until(
            lambda: (
                (got := self.get(f"dags/{MONITOR}/dagRuns/{quote(run_id)}")["state"]) in ("success", "failed") and got
            ),
            600,
            f"{MONITOR} run {run_id}",
        )
        tasks = self.get(f"dags/{MONITOR}/dagRuns/{quote(run_id)}/taskInstances")["task_instances"]
        states = {task["task_id"]: task["state"] for task in tasks}
        assert state == "success", states
        return run_id, states

    def xcom(self, run_id: str, task_id: str) -> dict:
        entry = self.get(f"dags/{MONITOR}/dagRuns/{quote(run_id)}/taskInstances/{task_id}/xcomEntries/return_value")
        return entry["value"] if isinstance(entry["value"], dict) else json.loads(entry["value"])

    def parsed(self, dag_id: str) -> bool:
        answer = httpx.get(f"{self.url}/api/v2/dags/{dag_id}", headers=self.headers, timeout=REST_TIMEOUT)
        if answer.status_code == 404:
            errors = self.get("importErrors")["import_errors"]
            assert not errors, f"the DAG processor could not import: {errors}"
            return False
        answer.raise_for_status()
        return True

    def retraining_runs(self) -> list[dict]:
        runs = self.get("dags/nlp_local/dagRuns", limit=100)["dag_runs"]
        return [run for run in runs if run["run_type"] == "asset_triggered"]


def drift_run(rest: Rest, before: set[str]) -> dict | None:
    """A new asset-triggered nlp_local run started by an event on the drift Asset, or None."""
    for run in rest.retraining_runs():
        if run["dag_run_id"] in before:
            continue
        events = rest.get(f"dags/nlp_local/dagRuns/{quote(run['dag_run_id'])}/upstreamAssetEvents")["asset_events"]
        if any(event["name"] == ASSET for event in events):
            return run
    return None


def test_drifted_traffic_triggers_a_retraining_run_and_familiar_traffic_none(
    airflow_stack, raw_data, trained_tiny, tmp_path
):
    env, rest = airflow_stack["env"], Rest(airflow_stack["url"])
    root = Path(env["AIRFLOW_VAR_NLP_ARTEFACT_ROOT"])
    capture, state, port = f"{root}/capture/nlp_local", tmp_path / "endpoint", free_port()
    production = make_production(root / "registry.sqlite", trained_tiny, tmp_path)
    assert production["status"] == "production"
    before = {run["dag_run_id"] for run in rest.retraining_runs()}
    wait_until(lambda: rest.parsed(MONITOR), 300, f"{MONITOR} to be parsed")
    rest.send("PATCH", f"dags/{MONITOR}", {"is_paused": False})
    try:
        url = serve(trained_tiny, state, capture, port)
        send(url, generated_pairs(raw_data)[:300])
        stop(state)
        familiar_end = datetime.now(UTC) + timedelta(seconds=1)
        run_id, states = rest.monitor(familiar_end)
        result = rest.xcom(run_id, "monitor")
        report = json.loads(Path(result["uri"], "monitoring.json").read_text())
        assert report["status"] == "ok", report
        assert report["records"] >= 100 and report["model_versions"] == {production["version"]: report["records"]}
        assert (states["no_drift"], states["signal_drift"]) == ("success", "skipped")
        assert drift_run(rest, before) is None, "traffic like the training data started a retraining run"

        # The next window (a minute later, so it holds none of the familiar traffic): long pairs of another topic.
        time.sleep(max(0.0, (familiar_end + timedelta(seconds=61) - datetime.now(UTC)).total_seconds()))
        serve(trained_tiny, state, capture, port)
        send(url, shifted_pairs(300))
        stop(state)
        run_id, states = rest.monitor(datetime.now(UTC) + timedelta(seconds=1))
        report = json.loads(Path(rest.xcom(run_id, "monitor")["uri"], "monitoring.json").read_text())
        assert report["status"] == "drift" and "token_length_psi" in report["drifted"], report
        assert states["signal_drift"] == "success" and states["no_drift"] == "skipped"
        [asset] = rest.get("assets", name_pattern=ASSET)["assets"]
        [event] = rest.get("assets/events", asset_id=asset["id"], source_dag_id=MONITOR, source_run_id=run_id)[
            "asset_events"
        ]
        assert event["extra"]["version"] == production["version"] and event["extra"]["drifted"] == report["drifted"]
        retraining = wait_until(lambda: drift_run(rest, before), 120, "the retraining run the drift event starts")
        # The run has the default Params, which read the hub (offline here): it is enough that it started.
        rest.send("PATCH", f"dags/nlp_local/dagRuns/{quote(retraining['dag_run_id'])}", {"state": "failed"})
    finally:
        rest.send("PATCH", f"dags/{MONITOR}", {"is_paused": True})
        run_tasks("stop-local", "--state", str(state), check=False)
