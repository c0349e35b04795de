"""An async Python client for the relay: identify, heartbeat, reconnect, send and receive.

async with RelayClient("ws://relay:8001/ws", token=token) as client:
    await client.send_command({"action": "start"}, target="factory-1")
    async for message in client:
        print(message.op, message.payload)
"""

from relay_client.auth import LoginError, LoginRefusedError, LoginUnavailableError, login
from relay_client.backoff import Backoff
from relay_client.client import ClientStoppedError, RelayClient
from relay_client.cursors import Cursor
from relay_client.messages import Message, Sender
from relay_client.policy import Reconnect, reconnect_policy
from relay_client.presence import FactoryPresence

__all__ = [
    "Backoff",
    "ClientStoppedError",
    "Cursor",
    "FactoryPresence",
    "LoginError",
    "LoginRefusedError",
    "LoginUnavailableError",
    "Message",
    "Reconnect",
    "RelayClient",
    "Sender",
    "login",
    "reconnect_policy",
]
