"""Tests of interlock's detect capability."""
