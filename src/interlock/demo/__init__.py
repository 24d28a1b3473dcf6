"""Demos: the stories of the README, run for real on this machine."""
