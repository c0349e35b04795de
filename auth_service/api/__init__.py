"""HTTP routes of the auth service and the dependencies they share."""
