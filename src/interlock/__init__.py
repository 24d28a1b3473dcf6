"""interlock: controls service-interrupting events on Debian/Ubuntu clusters."""
