from tests.cli import listener
from tests.services import postgres_server_url, postgres_url, redis_prefix, redis_url

__all__ = ["listener", "postgres_server_url", "postgres_url", "redis_prefix", "redis_url"]
