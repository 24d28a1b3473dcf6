"""Tests of the facts read from hosts: commands run for real, parsers on captured output."""
