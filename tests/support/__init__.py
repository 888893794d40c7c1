"""Test support: relays between mqlite and the server (fault injection, multiplexing)."""
