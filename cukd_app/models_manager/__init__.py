"""The user's models (issue 6): the store on disk and the manager dialog."""

from cukd_app.models_manager.dialog import ModelManagerDialog
from cukd_app.models_manager.store import ModelEntry, ModelStore, ModelStoreError

__all__ = ["ModelEntry", "ModelManagerDialog", "ModelStore", "ModelStoreError"]
