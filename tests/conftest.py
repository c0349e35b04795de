from tests.services import postgres_server_url, postgres_url, redis_prefix, redis_url

__all__ = ["postgres_server_url", "postgres_url", "redis_prefix", "redis_url"]
