"""Tests of the VM agent (qvd.vma)."""
