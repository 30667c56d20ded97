"""SageMaker's part, played on the in-process moto server: jobs that really run the steps, and UpdateEndpoint.

moto 5.2.5 records SageMaker jobs and marks them Completed without running anything, and has no
UpdateEndpoint. Installed with ``FakeSageMaker(...).install(monkeypatch)``, a job does here what SageMaker
does with the task image:

- training: ``/opt/ml`` laid out as SageMaker does (``input/config/hyperparameters.json`` with string values,
  ``resourceconfig.json``, one folder per channel under ``input/data/``, checkpoints from S3), the image run
  with the argument ``train``, ``model/`` uploaded as ``S3OutputPath/JOB/output/model.tar.gz``, checkpoints
  synced back, the output in CloudWatch Logs (``/aws/sagemaker/TrainingJobs``), ``output/failure`` as the
  job's FailureReason;
- processing: each ``ProcessingInput`` downloaded to its ``LocalPath``, the image run with the
  ``ContainerArguments``, each output's ``LocalPath`` uploaded to its ``S3Uri``, ``output/message`` as the
  ExitMessage;
- the task image is this checkout: ``python -m tasks ARGS``, with ``/opt/ml`` mapped to a folder of the test;
- jobs run in a thread, ``InProgress`` until the step exits; ``hold_jobs`` keeps them InProgress unrun;
- UpdateEndpoint switches the endpoint to the new config, or with ``roll_back_updates`` leaves it
  ``InService`` on the old one, as SageMaker's alarm-based auto-rollback does;
- endpoint configs accept the 6th/7th-generation Intel instances (c6i, m7i, ...): moto's list stops before them;
- InvokeEndpoint answers with the served model: ``python -m tasks serve`` on the endpoint's model data;
  ``broken_answers`` makes it answer what no model would.

Every request is kept as received (``requests``: action, JSON body) for tests to assert on.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

from tests.conftest import REPO, ServerProcess

ACCOUNT, REGION = "123456789012", "us-east-1"
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/nlp-tasks:test"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/nlp-sagemaker"
_RECORDED = (
    "create_processing_job",
    "create_training_job",
    "create_model",
    "create_endpoint_config",
    "create_endpoint",
    "update_endpoint",
    "create_model_package",
)


class FakeSageMaker:
    def __init__(self, endpoint_url: str, workdir: Path):
        import boto3

        self.endpoint_url, self.workdir = endpoint_url, workdir
        session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
        self.s3 = session.client("s3", endpoint_url=endpoint_url)
        self.logs = session.client("logs", endpoint_url=endpoint_url)
        self.requests: list[tuple[str, dict]] = []
        self.hold_jobs = self.roll_back_updates = self.broken_answers = False
        self.threads: list[threading.Thread] = []
        self.servers: dict[str, ServerProcess] = {}

    # ---- installation -------------------------------------------------------------------------------------
    def install(self, monkeypatch) -> FakeSageMaker:
        from moto.sagemaker.models import FakeEndpointConfig, SageMakerModelBackend
        from moto.sagemaker.responses import SageMakerResponse
        from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

        self.backend().reset()  # a fresh account: no jobs, models or packages of an earlier test
        fake = self
        for action in _RECORDED:
            original = getattr(SageMakerResponse, action, None)

            def recorded(response, _action=action, _original=original):
                fake.requests.append((_action, json.loads(response.body or "{}")))
                return _original(response)

            monkeypatch.setattr(SageMakerResponse, action, recorded, raising=False)
        monkeypatch.setattr(SageMakerResponse, "update_endpoint", self._update_endpoint_response(), raising=False)
        original_training, original_processing = (
            SageMakerModelBackend.create_training_job,
            SageMakerModelBackend.create_processing_job,
        )

        def create_training_job(backend, **kwargs):
            job = original_training(backend, **kwargs)
            self._start(job, "training", self._run_training)
            return job

        def create_processing_job(backend, **kwargs):
            job = original_processing(backend, **kwargs)
            self._start(job, "processing", self._run_processing)
            return job

        monkeypatch.setattr(SageMakerModelBackend, "create_training_job", create_training_job)
        monkeypatch.setattr(SageMakerModelBackend, "create_processing_job", create_processing_job)
        monkeypatch.setattr(SageMakerRuntimeResponse, "invoke_endpoint", self._invoke_endpoint_response())
        validate_instance_type = FakeEndpointConfig.validate_instance_type

        def current_instance_types(config, instance_type: str) -> None:
            if not re.fullmatch(r"ml\.[cmr][67]i\.\w+", instance_type):
                validate_instance_type(config, instance_type)

        monkeypatch.setattr(FakeEndpointConfig, "validate_instance_type", current_instance_types)
        return self

    def close(self) -> None:
        for thread in self.threads:
            thread.join(timeout=600)
        for server in self.servers.values():
            server.stop()

    # ---- what tests look at -------------------------------------------------------------------------------
    @staticmethod
    def backend():
        from moto.sagemaker.models import sagemaker_backends

        return sagemaker_backends[ACCOUNT][REGION]

    def requests_of(self, action: str) -> list[dict]:
        return [body for name, body in self.requests if name == action]

    # ---- jobs ---------------------------------------------------------------------------------------------
    def _start(self, job, kind: str, run) -> None:
        status = "training_job_status" if kind == "training" else "processing_job_status"
        setattr(job, status, "InProgress")
        if kind == "training":
            job.secondary_status = "Training"
        if self.hold_jobs:
            return
        thread = threading.Thread(target=self._finish, args=(job, status, run), daemon=True)
        self.threads.append(thread)
        thread.start()

    def _finish(self, job, status: str, run) -> None:
        try:
            failure = run(job)
        except Exception as error:  # the fake itself failed: say so as SageMaker would, with the reason
            failure = f"fake SageMaker: {error!r}"
        if status == "training_job_status":
            job.secondary_status = "Failed" if failure else "Completed"
            job.training_end_time = job.last_modified_time = time.time()
        if failure:
            job.failure_reason = failure
        setattr(job, status, "Failed" if failure else "Completed")

    def _root(self, name: str) -> Path:
        root = self.workdir / name / "opt-ml"
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        return root

    def _run_training(self, job) -> str | None:
        if int(job.resource_config["InstanceCount"]) > 1:  # its hosts would wait for peers that never come
            return "fake SageMaker runs one instance; multi-instance requests are checked, not run"
        root = self._root(job.training_job_name)
        config = root / "input" / "config"
        config.mkdir(parents=True)
        (config / "hyperparameters.json").write_text(json.dumps(job.hyper_parameters))
        hosts = [f"algo-{index + 1}" for index in range(int(job.resource_config["InstanceCount"]))]
        (config / "resourceconfig.json").write_text(json.dumps({"current_host": hosts[0], "hosts": hosts}))
        for channel in job.input_data_config:
            uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
            self._download(uri, root / "input" / "data" / channel["ChannelName"])
        checkpoints = (job.checkpoint_config or {}).get("S3Uri")
        if checkpoints:
            self._download(checkpoints.rstrip("/") + "/", root / "checkpoints")
        (root / "model").mkdir()
        stream = f"{job.training_job_name}/algo-1-{int(time.time())}"
        code, output = self._run(["train"], root, {})
        self._log("/aws/sagemaker/TrainingJobs", stream, output)
        if code != 0:
            failure = root / "output" / "failure"
            return failure.read_text() if failure.exists() else f"AlgorithmError: exit {code}: {output[-500:]}"
        archive = root / "model.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            for path in sorted((root / "model").iterdir()):
                tar.add(path, arcname=path.name)
        self._upload_file(archive, job.model_artifacts["S3ModelArtifacts"])
        if checkpoints:
            self._upload_folder(root / "checkpoints", checkpoints)
        return None

    def _run_processing(self, job) -> str | None:
        root = self._root(job.processing_job_name)
        (root / "config").mkdir()
        (root / "config" / "processingjobconfig.json").write_text(
            json.dumps({"ProcessingJobName": job.processing_job_name})
        )
        for processing_input in job.processing_inputs:
            source = processing_input["S3Input"]
            self._download(source["S3Uri"], self._local(root, source["LocalPath"]))
        outputs = job.processing_output_config["Outputs"]
        for output in outputs:
            self._local(root, output["S3Output"]["LocalPath"]).mkdir(parents=True, exist_ok=True)
        arguments = [self._mapped(root, argument) for argument in job.app_specification.get("ContainerArguments", [])]
        code, output = self._run(arguments, root, {})
        self._log("/aws/sagemaker/ProcessingJobs", f"{job.processing_job_name}/algo-1-{int(time.time())}", output)
        if code != 0:
            message = root / "output" / "message"
            job.exit_message = message.read_text() if message.exists() else output[-500:]
            return f"AlgorithmError: exit {code}: {job.exit_message}"
        for output in outputs:
            self._upload_folder(self._local(root, output["S3Output"]["LocalPath"]), output["S3Output"]["S3Uri"])
        return None

    def _run(self, arguments: list[str], root: Path, environment: dict) -> tuple[int, str]:
        env = {
            **os.environ,
            **environment,
            "TASKS_SAGEMAKER_ROOT": str(root),
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
        }
        result = subprocess.run(
            [sys.executable, "-m", "tasks", *arguments], cwd=REPO, env=env, capture_output=True, text=True, timeout=900
        )
        return result.returncode, result.stdout + result.stderr

    @staticmethod
    def _local(root: Path, container_path: str) -> Path:
        return root / Path(container_path).relative_to("/opt/ml")

    @staticmethod
    def _mapped(root: Path, argument: str) -> str:
        return str(root) + argument.removeprefix("/opt/ml") if argument.startswith("/opt/ml") else argument

    # ---- S3 and logs --------------------------------------------------------------------------------------
    def _download(self, uri: str, target: Path) -> None:
        """SageMaker's S3Prefix: every object under the prefix, named relative to the prefix's folder."""
        bucket, prefix = uri.removeprefix("s3://").split("/", 1)
        base = prefix if prefix.endswith("/") else prefix.rsplit("/", 1)[0] + "/" if "/" in prefix else ""
        target.mkdir(parents=True, exist_ok=True)
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                local = target / item["Key"][len(base) :]
                local.parent.mkdir(parents=True, exist_ok=True)
                self.s3.download_file(bucket, item["Key"], str(local))

    def _upload_file(self, path: Path, uri: str) -> None:
        bucket, key = uri.removeprefix("s3://").split("/", 1)
        self.s3.upload_file(str(path), bucket, key)

    def _upload_folder(self, folder: Path, uri: str) -> None:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                self._upload_file(path, f"{uri.rstrip('/')}/{path.relative_to(folder).as_posix()}")

    def _log(self, group: str, stream: str, output: str) -> None:
        if group not in [
            g["logGroupName"] for g in self.logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
        ]:
            self.logs.create_log_group(logGroupName=group)
        self.logs.create_log_stream(logGroupName=group, logStreamName=stream)
        now = int(time.time() * 1000)
        events = [{"timestamp": now, "message": line} for line in output.splitlines()[-5000:] if line.strip()]
        if events:
            self.logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)

    # ---- endpoints ----------------------------------------------------------------------------------------
    def _update_endpoint_response(self):
        from moto.core.responses import ActionResult

        fake = self

        def update_endpoint(response):
            body = json.loads(response.body)
            fake.requests.append(("update_endpoint", body))
            backend = response.sagemaker_backend
            endpoint = backend.endpoints[body["EndpointName"]]
            config = backend.describe_endpoint_config(body["EndpointConfigName"])
            if fake.roll_back_updates:
                endpoint.failure_reason = "Rolled back: CloudWatch alarm nlp-5xx in ALARM while baking"
            else:
                endpoint.endpoint_config_name = body["EndpointConfigName"]
                endpoint.production_variants = endpoint._process_production_variants(config["ProductionVariants"])
            endpoint.endpoint_status = "InService"
            return ActionResult({"EndpointArn": endpoint.arn})

        return update_endpoint

    def _invoke_endpoint_response(self):
        fake = self

        def invoke_endpoint(response):
            import httpx

            name = response.path.split("/")[2]
            if fake.broken_answers:
                return 200, {"Content-Type": "application/json"}, json.dumps({"predictions": []})
            server = fake._server_for(name)
            answer = httpx.post(
                f"{server.url}/invocations",
                content=response.body,
                headers={"Content-Type": "application/json"},
                timeout=120,
            )
            return answer.status_code, {"Content-Type": "application/json"}, answer.text

        return invoke_endpoint

    def _server_for(self, endpoint_name: str) -> ServerProcess:
        """``python -m tasks serve`` on the model data the endpoint's config names (started once per model)."""
        backend = self.backend()
        config = backend.describe_endpoint_config(backend.endpoints[endpoint_name].endpoint_config_name)
        container = backend.describe_model(config["ProductionVariants"][0]["ModelName"]).primary_container
        model_data = container.get("ModelDataUrl") or container["ModelDataSource"]["S3DataSource"]["S3Uri"]
        if model_data not in self.servers:
            folder = self.workdir / "served" / str(len(self.servers))
            if model_data.endswith(".tar.gz"):
                archive = self.workdir / "served" / f"{len(self.servers)}.tar.gz"
                archive.parent.mkdir(parents=True, exist_ok=True)
                bucket, key = model_data.removeprefix("s3://").split("/", 1)
                self.s3.download_file(bucket, key, str(archive))
                with tarfile.open(archive) as tar:
                    tar.extractall(folder, filter="data")
            else:
                self._download(model_data, folder)
            server = ServerProcess(folder, log=self.workdir / "served" / f"{len(self.servers)}.log")
            self.servers[model_data] = server
            server.wait_ready()
        return self.servers[model_data]
