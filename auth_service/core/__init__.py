"""Settings, password hashing and database plumbing of the auth service."""
