"""Tests of the disk-image builder (qvd.di)."""
