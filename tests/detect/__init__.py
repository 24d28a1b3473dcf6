"""Tests of detection: watched files, package transactions, outdated processes."""
