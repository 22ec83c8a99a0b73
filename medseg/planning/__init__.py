"""The planner: from a dataset to a :class:`~medseg.plan.Plan`.

:func:`collect_fingerprint` (:mod:`.fingerprint`) summarises a dataset; :func:`plan_dataset`
(:mod:`.rules`) derives a plan from it with documented, nnU-Net-like rules, recording the
reason for every choice in ``Plan.notes``; :func:`explain_plan` prints them.
"""

from medseg.planning.fingerprint import check_plan_fits_dataset, collect_fingerprint
from medseg.planning.rules import (
    choose_patch_and_batch,
    choose_target_spacing,
    estimate_vram_gb,
    explain_plan,
    network_topology,
    plan_dataset,
    plan_from_fingerprint,
)

__all__ = [
    "check_plan_fits_dataset",
    "choose_patch_and_batch",
    "choose_target_spacing",
    "collect_fingerprint",
    "estimate_vram_gb",
    "explain_plan",
    "network_topology",
    "plan_dataset",
    "plan_from_fingerprint",
]
