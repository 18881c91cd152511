"""NotificationWorkflow: delivers one reminder or escalation to the webhook, however long
the receiver is down.

A forum starts one per notice (a child it abandons) and goes on at once: no decision, no
deadline and no forum ever waits on the receiver. The delivery is one activity that
Temporal retries without end, with a capped backoff; the activity records the delivery
once (`NotificationDelivered`) and, once the outage has lasted, that too
(`NotificationDelayed`).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from musrenbang.workflows.contracts import NotifyInput

DELIVERY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
    maximum_attempts=0,  # without end: the receiver comes back eventually
    non_retryable_error_types=["NoWebhook"],
)


@workflow.defn
class NotificationWorkflow:
    """One notice, delivered once."""

    @workflow.run
    async def run(self, inp: NotifyInput) -> None:
        await workflow.execute_activity(
            "notify",
            inp,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=DELIVERY_RETRY,
        )
