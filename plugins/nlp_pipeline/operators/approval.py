"""The rollout's approval: Airflow's human-in-the-loop ApprovalOperator, open only to the policy's approvers."""

from __future__ import annotations

from airflow.providers.standard.operators.hitl import ApprovalOperator

from nlp_pipeline import policy


class PolicyApprovalOperator(ApprovalOperator):
    """Asks the promotion policy's approvers, less the user who triggered the run, to approve the rollout."""

    def execute(self, context):
        triggered_by = context["dag_run"].triggering_user_name
        self.assigned_users = policy.approvers(policy.of_run(context), triggered_by)
        names = ", ".join(user["id"] for user in self.assigned_users or []) or "any user allowed on this DAG"
        self.log.info("approvers of this rollout: %s (triggered by %s)", names, triggered_by or "the scheduler")
        return super().execute(context)
