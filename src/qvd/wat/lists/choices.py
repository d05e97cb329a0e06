"""The values of QVD's state columns, as ``(value, English label)`` choices for a
column's filter: ``Column("state", "State", "state", choices=VM_STATE_CHOICES)``. The
values are the database's (reference §1); the API refuses any other."""

from __future__ import annotations

__all__ = ["DI_STATE_CHOICES", "HOST_STATE_CHOICES", "USER_STATE_CHOICES", "VM_STATE_CHOICES"]

VM_STATE_CHOICES = (
    ("stopped", "Stopped"), ("starting", "Starting"), ("running", "Running"),
    ("stopping", "Stopping"), ("zombie", "Zombie"), ("debugging", "Debugging"),
)  # fmt: skip
USER_STATE_CHOICES = (
    ("disconnected", "Disconnected"), ("connecting", "Connecting"), ("connected", "Connected"),
)  # fmt: skip
HOST_STATE_CHOICES = (
    ("stopped", "Stopped"), ("starting", "Starting"), ("running", "Running"),
    ("stopping", "Stopping"), ("lost", "Lost"),
)  # fmt: skip
DI_STATE_CHOICES = (
    ("new", "New"), ("generating", "Generating"), ("fail", "Failed"), ("uploading", "Uploading"),
    ("upload_stalled", "Upload stalled"), ("verifying", "Verifying"), ("ready", "Ready"),
    ("published", "Published"), ("retired", "Retired"),
)  # fmt: skip
