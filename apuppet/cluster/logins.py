"""Console logins shared by the nodes (`ops.logins.LoginStore` on Redis): a login made through one node is valid
on all, a logout revokes it on all at once, and an unused one expires in Redis itself (the key's TTL).

Each login is a key `apuppet:login:<SHA-256 of the token>` holding its record (CSRF token, address, when made):
the token itself is never written, so reading Redis does not give a login. A sorted set indexes the logins by
age so that, as on a single server, at most `MAX_LOGINS` exist (the oldest goes).
"""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis

from .directory import PREFIX

JSON = dict[str, Any]
INDEX = f"{PREFIX}:logins"

#: KEYS[1] the index, KEYS[2] the login; ARGV: record, idle (ms), when made, the most logins kept. Index entries
#: of logins that expired meanwhile go with the oldest (deleting an expired key is a no-op).
ADD_SCRIPT = """
redis.call('SET', KEYS[2], ARGV[1], 'PX', tonumber(ARGV[2]))
redis.call('ZADD', KEYS[1], tonumber(ARGV[3]), KEYS[2])
local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[4])
if over > 0 then
  for _, key in ipairs(redis.call('ZPOPMIN', KEYS[1], over)) do
    redis.call('DEL', key)
  end
end
return 0
"""


def login_key(key: str) -> str:
    return f"{PREFIX}:login:{key}"


class RedisLoginStore:
    """The cluster's logins; `limit` is `ops.logins.MAX_LOGINS` (passed in: cluster/ imports nothing of ops/)."""

    def __init__(self, client: aioredis.Redis, limit: int) -> None:
        self.client = client
        self.limit = limit
        self._add = client.register_script(ADD_SCRIPT)

    async def add(self, key: str, record: JSON, idle: float) -> None:
        created = float(record.get("created", 0.0))
        args: list[str | int | float] = [json.dumps(record), max(1, int(idle * 1000)), created, self.limit]
        await self._add(keys=[INDEX, login_key(key)], args=args)

    async def use(self, key: str, idle: float) -> JSON | None:
        value = await self.client.getex(login_key(key), px=max(1, int(idle * 1000)))
        if not isinstance(value, str):
            return None
        try:
            record = json.loads(value)
        except ValueError:
            return None
        return record if isinstance(record, dict) else None

    async def remove(self, key: str) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(login_key(key))
        pipe.zrem(INDEX, login_key(key))
        await pipe.execute()
