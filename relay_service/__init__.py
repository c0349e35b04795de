"""The WebSocket gateway: operators' commands to factories, factories' statuses to the rest."""
