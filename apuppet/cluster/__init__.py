"""Scale-out: several apuppet nodes behind one address, sharing who holds what through Redis (`redis_url`).

`directory.py` is the sans-I/O part (key names, who is alive, where a handle goes), `bus.py` the Redis adapter
(redis-py asyncio: keys, the heartbeat pipeline, pub/sub), `router.py` the request routing in front of the
`Gateway` and the guests it keeps for other nodes, `node.py` the node's lifecycle and heartbeat, `workers.py`
`apuppet serve --workers N`, `guessing.py` (sans-I/O) and `guesses.py` (Redis) the wrong-secret limits that hold
for all nodes. Without `redis_url` none of it is loaded.
"""
