"""Tests of interlock's rollout capability."""
