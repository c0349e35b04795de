"""What both services use: settings base, token minting and checks, the protocol's models."""
