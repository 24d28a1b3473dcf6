"""Tests of interlock's release upgrades."""
