"""The promotion policy lives outside the run: a run Param cannot loosen it, and nobody approves their own run."""

import json
import sys

import pendulum
import pytest

from tests.airflow.task_context import task_context
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "plugins"))

from airflow.providers.standard.operators.hitl import ApprovalOperator  # noqa: E402
from airflow.sdk.exceptions import AirflowFailException  # noqa: E402
from nlp_pipeline import commands, pipeline, policy  # noqa: E402
from nlp_pipeline.operators.approval import PolicyApprovalOperator  # noqa: E402
from nlp_pipeline.params import pipeline_params  # noqa: E402

from tasks.config import EvaluateArguments, flag_schema  # noqa: E402

STRICT = {"min_accuracy": 0.8, "min_f1": 0.85, "max_int8_loss": 0.01, "champion_margin": 0.02}


@pytest.fixture
def reviewed(monkeypatch):
    """Set the Variable nlp_promotion_policy (as an environment variable, the way Airflow reads one)."""

    def set_policy(value) -> None:
        text = value if isinstance(value, str) else json.dumps(value)
        monkeypatch.setenv("AIRFLOW_VAR_NLP_PROMOTION_POLICY", text)

    monkeypatch.delenv("AIRFLOW_VAR_NLP_PROMOTION_POLICY", raising=False)
    return set_policy


def test_no_param_of_the_trigger_form_sets_a_threshold_or_the_approvers():
    params = pipeline_params()
    assert not set(params) & {*policy.THRESHOLDS, "approvers"}
    assert not {spec.field for spec in commands.PARAM_FLAGS if spec.step == "evaluate"} & set(policy.THRESHOLDS)


def test_the_defaults_and_ranges_are_the_evaluate_steps_own():
    for name in policy.THRESHOLDS:
        flag = flag_schema(EvaluateArguments, name)
        assert policy.DEFAULTS[name] == flag["default"] > 0
        assert {key: policy.SCHEMA["properties"][name][key] for key in ("minimum", "maximum")} == {
            "minimum": flag["minimum"],
            "maximum": flag["maximum"],
        }
    assert policy.DEFAULTS["require_approval"] is False and policy.DEFAULTS["approvers"] == []


def test_unset_the_policy_is_the_defaults(reviewed):
    loaded, where = policy.load()
    assert loaded == policy.DEFAULTS and "not set" in where


def test_the_variable_sets_it(reviewed):
    reviewed(STRICT | {"require_approval": True, "approvers": ["alice", "bob"]})
    loaded, where = policy.load()
    assert loaded == STRICT | {"require_approval": True, "approvers": ["alice", "bob"]}
    assert where == "the Airflow Variable nlp_promotion_policy"


@pytest.mark.parametrize(
    "value, message",
    [
        ("{not json", "the Airflow Variable nlp_promotion_policy: not valid JSON"),
        ({"min_accuracy": 1.5}, "nlp_promotion_policy: min_accuracy: 1.5 is greater than the maximum of 1"),
        ({"min_f1": "high"}, "min_f1: 'high' is not of type 'number'"),
        ({"min_acuracy": 0.9}, "(the whole policy): Additional properties are not allowed ('min_acuracy'"),
        ({"approvers": "alice"}, "approvers: 'alice' is not of type 'array'"),
        ({"approvers": [""]}, "approvers.0: '' should be non-empty"),
        ({"require_approval": "yes"}, "require_approval: 'yes' is not of type 'boolean'"),
        ({"require_approval": True}, "approvers: required when require_approval is true"),
        ([], "(the whole policy): [] is not of type 'object'"),
    ],
)
def test_a_bad_policy_fails_naming_the_variable_and_the_field(reviewed, value, message):
    reviewed(value)
    with pytest.raises(AirflowFailException) as raised:
        policy.load()
    assert message in str(raised.value)


@pytest.mark.parametrize(
    "conf",
    [
        {"min_accuracy": 0},
        {"min_f1": 0.5},
        {"max_int8_loss": 1},
        {"champion_margin": 0.5},
        {"min_accuracy": True},
        {"min_accuracy": "0.9"},
        {"max_int8_loss": None},
    ],
)
def test_a_run_cannot_loosen_a_threshold(conf):
    (name,) = conf
    with pytest.raises(AirflowFailException, match=f"the run's conf sets {name}=.*a run may only tighten it"):
        policy.tightened(STRICT | {"require_approval": False, "approvers": []}, conf)


def test_a_run_may_tighten_thresholds_and_add_approval_but_not_drop_it_or_choose_approvers():
    reviewed = STRICT | {"require_approval": True, "approvers": ["alice"]}
    run = policy.tightened(reviewed, {"min_accuracy": 0.9, "champion_margin": 0, "require_approval": False})
    assert run == reviewed | {"min_accuracy": 0.9, "champion_margin": 0, "require_approval": True}
    added = policy.tightened(reviewed | {"require_approval": False}, {"require_approval": True})
    assert added["require_approval"] is True
    with pytest.raises(AirflowFailException, match="the run's conf sets approvers"):
        policy.tightened(reviewed, {"approvers": ["mallory"]})


def _context(params: dict, run_policy: dict | None, triggered_by: str | None = "alice") -> dict:
    xcom = {} if run_policy is None else {(policy.TASK_ID, "return_value"): run_policy}
    context = task_context(
        "nlp_local", "evaluate", params, logical_date=pendulum.datetime(2026, 5, 1, tz="UTC"), run_id="r", xcom=xcom
    )
    context["dag_run"].triggering_user_name = triggered_by
    return context


def test_the_steps_get_the_runs_policy_whatever_the_params_say():
    run_policy = STRICT | {"require_approval": True, "approvers": []}
    params = {"min_accuracy": 0, "min_f1": 0, "require_approval": False, "deploy": True, "timing": "quick"}
    context = _context(params, run_policy)
    built = commands.values("evaluate", params, **policy.thresholds(context))
    assert {name: built[name] for name in policy.THRESHOLDS} == STRICT
    assert policy.requires_approval(context)
    chosen = pipeline.choose_rollout.function({"version": "v1"}, "deploy", **context | {"params": params})
    assert chosen == "approve"


def test_a_run_without_its_policy_fails_rather_than_use_none():
    with pytest.raises(AirflowFailException, match="its first task, policy, did not run"):
        policy.thresholds(_context({}, None))


def run_params(**conf) -> dict:
    """A run's Params: the form's defaults, then what its conf sets."""
    return {name: param.value for name, param in pipeline_params().items()} | conf


def test_the_policy_task_fixes_the_policy_for_the_run(reviewed):
    reviewed(STRICT)
    fixed = pipeline.promotion_policy.function(params=run_params(require_approval=True, min_f1=0.9))
    assert fixed == STRICT | {"min_f1": 0.9, "require_approval": True, "approvers": []}
    with pytest.raises(AirflowFailException, match="min_accuracy=0"):
        pipeline.promotion_policy.function(params=run_params(require_approval=False, min_accuracy=0))


# What the Param schemas let through and the tune step refuses: each search range with LO above HI.
UPSIDE_DOWN = {
    "learning_rate_range": [3e-4, 1e-5],
    "epochs_range": [5, 2],
    "warmup_ratio_range": [0.2, 0.1],
    "weight_decay_range": [0.1, 0],
}


@pytest.mark.parametrize("name", UPSIDE_DOWN)
def test_the_policy_task_refuses_a_search_range_upside_down_naming_the_param_before_any_step(reviewed, name):
    from airflow.sdk.exceptions import ParamValidationError

    try:
        pipeline_params()[name].resolve(UPSIDE_DOWN[name])
    except ParamValidationError:
        pytest.fail(f"the form refuses {name}={UPSIDE_DOWN[name]} itself: this check is no longer the policy task's")
    with pytest.raises(AirflowFailException, match=rf"^{name}: --{name.replace('_', '-')} must be LO HI with LO no"):
        pipeline.promotion_policy.function(params=run_params(**{name: UPSIDE_DOWN[name]}))
    with pytest.raises(AirflowFailException, match=rf"^{name}: "):
        policy.check_params(run_params(tuning_trials=0, **{name: UPSIDE_DOWN[name]}))


def test_the_policy_task_takes_the_default_search_and_any_range_of_one_value(reviewed):
    policy.check_params(run_params())
    policy.check_params(run_params(tuning_trials=4, learning_rate_range=[1e-4, 1e-4], epochs_range=[3, 3]))


def test_the_trigger_is_taken_off_the_approvers():
    assert policy.approvers({"approvers": ["alice", "bob"]}, "alice") == [{"id": "bob", "name": "bob"}]
    assert policy.approvers({"approvers": []}, "alice") is None
    with pytest.raises(AirflowFailException, match=r"approvers are \['alice'\] and alice triggered it"):
        policy.approvers({"approvers": ["alice"]}, "alice")


def test_the_approval_task_asks_only_the_policys_approvers(monkeypatch):
    asked = []
    monkeypatch.setattr(ApprovalOperator, "execute", lambda self, context: asked.append(self.assigned_users))
    operator = PolicyApprovalOperator(task_id="approve", subject="Roll out?")
    run_policy = STRICT | {"require_approval": True, "approvers": ["alice", "bob"]}
    operator.execute(_context({}, run_policy, triggered_by="bob"))
    assert asked == [[{"id": "alice", "name": "alice"}]]
    with pytest.raises(AirflowFailException, match="nobody may approve this run"):
        operator.execute(_context({}, run_policy | {"approvers": ["bob"]}, triggered_by="bob"))
    assert len(asked) == 1


def test_every_platform_dag_fixes_the_policy_first_and_approves_by_it():
    from tests.airflow.test_platforms import PLATFORMS

    for name, platform in PLATFORMS.items():
        dag = pipeline.build_pipeline(f"policy_{name}", platform, doc_md="", tags=[])
        assert dag.get_task(policy.TASK_ID).downstream_task_ids == {"stage_dataset"}
        assert isinstance(dag.get_task("approve"), PolicyApprovalOperator)
