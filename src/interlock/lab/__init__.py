"""A lab of real hosts (network namespaces, overlays, sshd, haproxy, an HTTP API) on one machine."""
