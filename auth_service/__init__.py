"""The auth service: users in SQL, JWT login, LiveKit tokens and user administration."""
