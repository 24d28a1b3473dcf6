"""The README's demos, run as a newcomer runs them."""
