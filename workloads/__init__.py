"""tradeplane.workloads: the engine wired to the outside world.

Bus adapters (Kafka or in-process), store adapters (ClickHouse server or embedded chDB), exchange adapters
(Binance, paper), the gateway, the Ray Serve app and the local runner. Only this layer opens sockets.
"""
