"""CheckpointWorkflow: run by the Temporal Schedule `musrenbang-checkpoints` (created by
the worker), it signs a checkpoint of every log that grew since its last one, so a log
that grows between closings is anchored too."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

SCHEDULE_ID = "musrenbang-checkpoints"


@workflow.defn
class CheckpointWorkflow:
    @workflow.run
    async def run(self) -> dict[str, int]:
        sizes: dict[str, int] = await workflow.execute_activity(
            "checkpoint_logs",
            start_to_close_timeout=timedelta(minutes=10),
            result_type=dict,
        )
        return sizes
