"""The task and deployment state machines, as data.

Tasks
-----
A task is saved ``pending``. A replica *claims* it: it becomes ``processing``
under a lease (owner, expiry) and gets a fresh fencing token from the
namespace's counter, so tokens only grow. The holder then completes it, fails
it (optionally asking for a retry) or releases it; each of those needs the
current token, so a holder that paused past its lease and was replaced cannot
change anything (``StaleLeaseError``).

Nothing is ever stuck: an expired lease is *reaped* back to ``pending`` (or to
``failed`` once ``attempts`` reached ``max_attempts``), and an operator may
override any non-final status. ``completed`` and ``failed`` are final: no
operation of a service leaves them.

One override leaves ``failed``: an operator may *requeue* a failed task
(``failed -> pending``), as every job system lets one retry a dead job once the
cause is fixed. The task goes back to its place in the queue with a new token
and ``attempts`` reset to 0 (it gets ``max_attempts`` claims again; a requeue
that kept them would fail it after one more claim); ``last_error`` stays until
the next failure, so the reason it failed remains readable. ``completed`` stays
final even for an operator: running a completed task again would repeat its
side effects (a second submission), which no store can undo.

The table below is the single source of truth: the fake checks against it,
the Lua scripts mirror it (a unit test compares them), and the contract suite
walks every (status, operation) pair.

Deployments
-----------
``pending -> deploying -> running | failed`` and ``pending -> failed``;
``running`` and ``failed`` are final.
"""

from __future__ import annotations

import enum

from .models import DeploymentStatus, TaskStatus

__all__ = [
    "DEPLOYMENT_TRANSITIONS",
    "FINAL_TASK_STATUSES",
    "TASK_OPERATIONS",
    "TASK_OVERRIDES",
    "TaskOp",
    "deployment_transition_allowed",
    "override_allowed",
]

P, R, C, F = TaskStatus.PENDING, TaskStatus.PROCESSING, TaskStatus.COMPLETED, TaskStatus.FAILED


class TaskOp(enum.StrEnum):
    """Operations that move a task; values are the event kinds' verbs."""

    CLAIM = "claim"
    COMPLETE = "complete"
    FAIL = "fail"
    RETRY = "retry"  # fail(retry=True)
    RELEASE = "release"
    REAP = "reap"
    RENEW = "renew"


# Operation -> the status it requires. RETRY and REAP land on pending, or on
# failed once attempts reached max_attempts. RENEW keeps processing.
TASK_OPERATIONS: dict[TaskOp, tuple[TaskStatus, frozenset[TaskStatus]]] = {
    TaskOp.CLAIM: (P, frozenset({R, F})),  # failed: the deadline passed before the claim
    TaskOp.COMPLETE: (R, frozenset({C})),
    TaskOp.FAIL: (R, frozenset({F})),
    TaskOp.RETRY: (R, frozenset({P, F})),
    TaskOp.RELEASE: (R, frozenset({P})),
    TaskOp.REAP: (R, frozenset({P, F})),
    TaskOp.RENEW: (R, frozenset({R})),
}

# update_task_status: the operator's override. Same status is a no-op.
TASK_OVERRIDES: dict[TaskStatus, frozenset[TaskStatus]] = {
    P: frozenset({R, F}),
    R: frozenset({C, F, P}),
    C: frozenset(),
    F: frozenset({P}),  # the operator's requeue; attempts start again from 0
}

# No operation of a service leaves these (only the operator's requeue leaves failed).
FINAL_TASK_STATUSES = frozenset({C, F})

DEPLOYMENT_TRANSITIONS: dict[DeploymentStatus, frozenset[DeploymentStatus]] = {
    DeploymentStatus.PENDING: frozenset({DeploymentStatus.DEPLOYING, DeploymentStatus.FAILED}),
    DeploymentStatus.DEPLOYING: frozenset({DeploymentStatus.RUNNING, DeploymentStatus.FAILED}),
    DeploymentStatus.RUNNING: frozenset(),
    DeploymentStatus.FAILED: frozenset(),
}


def override_allowed(current: TaskStatus, target: TaskStatus) -> bool:
    return target in TASK_OVERRIDES[current]


def deployment_transition_allowed(current: DeploymentStatus, target: DeploymentStatus) -> bool:
    return target in DEPLOYMENT_TRANSITIONS[current]
