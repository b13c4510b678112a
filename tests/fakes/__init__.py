"""Stand-ins for forge HTTP APIs: real servers speaking the real wire protocol."""
