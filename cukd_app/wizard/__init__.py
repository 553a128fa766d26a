"""The retrain wizard (issue 6): adapt the model to the user's own labelled photos."""

from cukd_app.wizard.context_scan import ContextReport, ContextSource, scan_context
from cukd_app.wizard.job import RetrainEvent, RetrainOutcome, RetrainPlan, run_retrain
from cukd_app.wizard.services import RetrainRun, WizardServices
from cukd_app.wizard.wizard import RetrainWizard

__all__ = [
    "ContextReport",
    "ContextSource",
    "RetrainEvent",
    "RetrainOutcome",
    "RetrainPlan",
    "RetrainRun",
    "RetrainWizard",
    "WizardServices",
    "run_retrain",
    "scan_context",
]
