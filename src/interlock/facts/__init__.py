"""What the operator's side reads from a host: one module per fact, each a command and a parser.

A fact's command is an argv (`sh -c SCRIPT`, or `bash -c SCRIPT` where builtins spare the host
processes) that needs nothing on the host but the base system (bash is Essential on Debian and
Ubuntu); its parser is a pure function of the command's output, tested on output
captured from real hosts (tests/fixtures/facts). Fleet status, the rollout and the upgrade all read
hosts through these, so each thing a host can say is read and understood in one place.
"""
