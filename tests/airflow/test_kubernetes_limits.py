"""The cluster limits of nlp_eks (plugins/nlp_pipeline/specs/kubernetes_limits.py): quantities read as numbers, the
Params' static bounds agreeing with them, the Variable ``nlp_k8s_limits`` read (each malformed value refused by
name), each Param checked against it with the Param, its value and the limit named; and a run asking more than it
allows failing at its first pod's task, not retried, before any pod exists."""

import json
import re
import sys
from fractions import Fraction

import pytest

from tests.airflow.test_kubernetes_operators import context, live_pods, stage_operator
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "plugins"))

from airflow.sdk.exceptions import AirflowFailException  # noqa: E402
from nlp_pipeline import eks  # noqa: E402
from nlp_pipeline.params import CPU_PATTERN, MEMORY_PATTERN, eks_params  # noqa: E402
from nlp_pipeline.specs.kubernetes_limits import (  # noqa: E402
    DEFAULTS,
    EFFECTS,
    STATIC_MAX,
    LimitError,
    Limits,
    check,
    digits_up_to,
    parse_quantity,
    problems,
)

VNNI, GPU = "feature.node.kubernetes.io/cpu-cpuid.AVX512VNNI", "nvidia.com/gpu.present"
GI = 1024**3


def params(**changes) -> dict:
    """The nlp_eks Params' defaults with ``changes``."""
    return {name: param.value for name, param in eks_params().items()} | changes


# ---- quantities -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Fraction(1, 2)),
        ("0.5", Fraction(1, 2)),
        (".5", Fraction(1, 2)),
        ("2", 2),
        ("1k", 1000),
        ("1Ki", 1024),
        ("16G", 16 * 10**9),
        ("16Gi", 16 * GI),
        ("1.5Gi", 3 * GI // 2),
        ("1e3", 1000),
        ("1E-3", Fraction(1, 1000)),
        ("1Ti", 1024 * GI),
    ],
)
def test_a_quantity_is_the_number_kubernetes_reads(text, value):
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "four", "8K", "1ki", "16 Gi", "16GB", "Gi", "1.2.3", None, 16])
def test_a_malformed_quantity_is_refused_by_name(text):
    """Kilo is ``k`` (1000) in Kubernetes' grammar; ``K`` is refused by the API server."""
    with pytest.raises(ValueError, match="is not a Kubernetes quantity"):
        parse_quantity(text)


@pytest.mark.parametrize("maximum", [1, 2, 9, 10, 11, 19, 20, 64, 99, 100, 101, 512, 999, 1000, 64000])
def test_digits_up_to_matches_exactly_the_whole_numbers_from_one_to_the_maximum(maximum):
    pattern = re.compile(digits_up_to(maximum))
    assert [n for n in range(2 * maximum + 20) if pattern.fullmatch(str(n))] == list(range(1, maximum + 1))
    assert not pattern.fullmatch("07") and not pattern.fullmatch("")


def test_the_cpu_pattern_admits_exactly_the_cpus_above_0_up_to_the_static_maximum():
    most, pattern = parse_quantity(STATIC_MAX["cpu"]), re.compile(CPU_PATTERN)
    probes = [f"{n}m" for n in range(0, 70_000, 7)] + ["64000m", "64001m"]
    probes += [str(n) for n in range(0, 100)] + [f"{n}.{d}" for n in range(0, 66) for d in ("0", "5", "25", "999")]
    probes += ["0.001", "0.000", "0.0", "63.999", "64.0", "100000"]
    for probe in probes:
        assert bool(pattern.search(probe)) is (0 < parse_quantity(probe) <= most), probe


def test_the_memory_pattern_admits_exactly_whole_gi_mi_g_m_above_0_up_to_the_static_maximum():
    most, pattern = parse_quantity(STATIC_MAX["memory"]), re.compile(MEMORY_PATTERN)
    probes = [f"{n}{unit}" for unit in ("Gi", "G") for n in range(0, 600)]
    probes += [
        f"{n}{unit}" for unit in ("Mi", "M") for n in [*range(0, 600_000, 997), 524_288, 524_289, 549_755, 549_756]
    ]
    for probe in probes:
        assert bool(pattern.search(probe)) is (0 < parse_quantity(probe) <= most), probe
    assert not any(pattern.search(probe) for probe in ["1Ti", "16Ki", "16k", "17179869184", "1.5Gi", "16K"])


# ---- the Variable ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", [None, "", "  ", "{}"])
def test_without_the_variable_the_defaults_hold(text):
    assert Limits.from_variable(text) == Limits() == Limits.from_variable(json.dumps(DEFAULTS))


def test_the_variable_sets_what_it_names_and_the_rest_keeps_its_default():
    limits = Limits.from_variable(json.dumps({"max_cpu": 8, "toleration_keys": ["intel"], "node_labels": [VNNI]}))
    assert limits == Limits(max_cpu="8", toleration_keys=("intel",), node_labels=(VNNI,))


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("{max_cpu: 8}", "is not JSON"),
        ('["intel"]', r"is \['intel'\], not a JSON object"),
        ('{"max_cpus": "8"}', r"has unknown keys \['max_cpus'\]: it takes max_cpu, max_memory"),
        ('{"max_cpu": "lots"}', "max_cpu: 'lots' is not a Kubernetes quantity"),
        ('{"max_cpu": "0"}', "max_cpu: '0' is not above 0"),
        ('{"max_memory": true}', "max_memory: True is not a Kubernetes quantity"),
        ('{"max_memory": "64GB"}', "max_memory: '64GB' is not a Kubernetes quantity"),
        ('{"toleration_keys": "intel"}', "toleration_keys is 'intel', not a list of non-empty strings"),
        ('{"toleration_keys": [""]}', "toleration_keys is .*not a list of non-empty strings"),
        ('{"node_labels": [1]}', "node_labels is .*not a list of non-empty strings"),
        ('{"toleration_effects": ["NoSchedule", "Never"]}', r"toleration_effects has \['Never'\]: effects are"),
    ],
)
def test_a_malformed_variable_is_refused_naming_the_variable_and_what_is_wrong(text, error):
    with pytest.raises(LimitError, match=f"Variable nlp_k8s_limits {error}"):
        Limits.from_variable(text)


# ---- the Params against the limits ----------------------------------------------------------------------------------
def test_the_default_params_fit_the_default_limits():
    assert problems(params(), Limits()) == []


@pytest.mark.parametrize(
    ("changes", "limits", "problem"),
    [
        ({"step_cpu": "17"}, {}, "step_cpu 17 is over max_cpu 16"),
        ({"server_cpu": "16001m"}, {}, "server_cpu 16001m is over max_cpu 16"),
        ({"step_cpu": "9"}, {"max_cpu": "8500m"}, "step_cpu 9 is over max_cpu 8500m"),  # as text "9" > "8500m"...
        ({"step_memory": "65Gi"}, {}, "step_memory 65Gi is over max_memory 64Gi"),
        ({"server_memory": "69G"}, {}, "server_memory 69G is over max_memory 64Gi"),  # 69e9 > 64 * 2**30
        (
            {"step_memory": "2049Mi", "server_memory": "1Gi"},
            {"max_memory": "2Gi"},
            "step_memory 2049Mi is over max_memory 2Gi",
        ),
        ({"node_features": [GPU]}, {}, f"node_features label {GPU} is not in node_labels"),
        (
            {"node_features": [], "compression_node_features": [VNNI]},
            {"node_labels": [GPU]},
            f"compression_node_features label {VNNI}",
        ),
        ({"tolerations": [{"key": "intel", "effect": "NoSchedule"}]}, {}, r"tolerations\[0\] key intel is not in"),
        (
            {"tolerations": [{"key": "intel", "operator": "Exists"}]},
            {"toleration_keys": ["intel"]},
            r"tolerations\[0\] has no effect, so it tolerates every effect of intel: name one of toleration_effects",
        ),
        (
            {"tolerations": [{"key": "intel", "effect": "NoSchedule"}, {"key": "intel", "effect": "NoExecute"}]},
            {"toleration_keys": ["intel"]},
            r"tolerations\[1\] effect NoExecute is not in toleration_effects \['NoSchedule', 'PreferNoSchedule'\]",
        ),
    ],
)
def test_a_param_over_the_limits_is_refused_naming_the_param_its_value_and_the_limit(changes, limits, problem):
    found = problems(params(**changes), Limits.from_variable(json.dumps(limits)))
    assert len(found) == 1 and re.search(problem, found[0]), found


@pytest.mark.parametrize(
    ("changes", "limits"),
    [
        ({"step_cpu": "16000m", "server_cpu": "16.0", "step_memory": "64Gi", "server_memory": "65536Mi"}, Limits()),
        ({"server_memory": "68G"}, Limits()),  # 68e9 < 64 * 2**30
        ({"node_features": [GPU], "compression_node_features": []}, Limits(node_labels=(GPU,))),
        ({"node_features": [], "compression_node_features": None}, Limits(node_labels=())),
        (
            {"tolerations": [{"key": "intel", "operator": "Exists"}]},
            Limits(toleration_keys=("intel",), toleration_effects=EFFECTS),
        ),
    ],
)
def test_params_within_the_limits_pass(changes, limits):
    assert problems(params(**changes), limits) == []


def test_check_lists_every_problem_and_how_to_allow_it():
    with pytest.raises(LimitError) as raised:
        check(params(step_cpu="32", node_features=[GPU]), Limits())
    message = str(raised.value)
    assert message.startswith("this run asks more of the cluster than the Variable nlp_k8s_limits allows:")
    assert "step_cpu 32 is over max_cpu 16; node_features label" in message and "docs/eks.md" in message


def test_a_malformed_variable_fails_the_run_not_retried(monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_NLP_K8S_LIMITS", "{max_cpu: 8}")
    with pytest.raises(AirflowFailException, match="Variable nlp_k8s_limits is not JSON"):
        eks.check_limits(params())


def test_a_run_asking_more_cpu_than_the_limits_allow_fails_before_any_pod(fake_kubernetes, raw_data, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_NLP_K8S_LIMITS", json.dumps({"max_cpu": "2"}))
    run = context("stage_dataset", source=str(raw_data), step_cpu="3")
    with pytest.raises(AirflowFailException, match=r"nlp_k8s_limits allows: step_cpu 3 is over max_cpu 2"):
        stage_operator().execute(run)
    assert fake_kubernetes.pods_run == [] and live_pods(fake_kubernetes) == []
