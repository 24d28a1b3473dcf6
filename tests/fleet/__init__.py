"""Tests of interlock's fleet capability."""
