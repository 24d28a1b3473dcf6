"""Tests of the host side: the gate, policies, the ledger, services and host commands."""
