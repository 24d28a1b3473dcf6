"""Tests of interlock's lab capability."""
