"""Tests of interlock's lb capability."""
