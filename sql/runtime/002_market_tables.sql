-- Market data as received: one row per EVENT_DTYPE record (engine/events.py), written by
-- tradeplane.workloads.store.market (columnar, from the event arrays) and read back by its replay_events.
--
-- Conventions (as 001): ts is the table's main time as DateTime64(9, 'UTC') = exchange_ts; the *_ts columns
-- keep the exact int64 nanoseconds. Every event table carries (ingest_ts, ingest_pos): the receive time and
-- the event's position among the events of its stream received at that same ns, so a replay restores the
-- order the engine consumed (exchange_ts alone is not monotonic across streams) and a re-inserted event has
-- the same sort key as the original. kind is the record's whole bit field (kind | flags), so a replay rebuilds
-- the record exactly; side/last_in_msg spell out the flags for queries.
--
-- Engines: ReplacingMergeTree on the full event key, so a batch inserted twice (a sink retry, a re-consumed
-- Kafka batch) collapses at merge time on every server version (query with FINAL, or de-duplicate on the
-- key, as replay_events does); on servers that have it, non_replicated_deduplication_window also drops an
-- identical block at insert time (and its materialized-view rows). The dialect (workloads/store/dialect.py)
-- removes codecs, TTL, this setting and LowCardinality and maps DateTime64 to Int64 ns on a ClickHouse 18.16.
--
-- TTL on the hot tables counts from stored_at (when the row was written), not from ts: a backfill of an old
-- capture must not be deleted on arrival.

-- TRADE and AGG_TRADE events. trade_id/first_id/last_id = seq/first_seq/prev_seq; side +1 taker buy, -1 taker
-- sell, 0 unknown. dpx, vbucket and vbucket_quote are computed by the writer at insert time for the
-- volume-bucket view (004): dpx = price - previous trade price of the stream (NaN for its first trade),
-- vbucket = floor(cumulative quote volume before the trade / vbucket_quote) (-1 when not bucketed).
CREATE TABLE IF NOT EXISTS trades
(
    venue          LowCardinality(String),
    symbol         LowCardinality(String),
    ts             DateTime64(9, 'UTC') CODEC(Delta, ZSTD),
    exchange_ts    Int64 CODEC(Delta, ZSTD),
    ingest_ts      Int64 CODEC(Delta, ZSTD),
    ingest_pos     UInt32 CODEC(ZSTD),
    kind           UInt32 CODEC(ZSTD),
    trade_id       Int64 CODEC(Delta, ZSTD),
    first_id       Int64 CODEC(Delta, ZSTD),
    last_id        Int64 CODEC(Delta, ZSTD),
    price          Float64 CODEC(ZSTD),
    qty            Float64 CODEC(ZSTD),
    side           Int8,
    dpx            Float64 CODEC(ZSTD),
    vbucket        Int64 CODEC(Delta, ZSTD),
    vbucket_quote  Float64 CODEC(ZSTD)
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts)
ORDER BY (venue, symbol, ts, ingest_ts, ingest_pos)
SETTINGS non_replicated_deduplication_window = 1000;

-- DEPTH (diff levels), SNAPSHOT (REST snapshot levels) and BBO (bookTicker sides): everything a book is
-- rebuilt from. side +1 bid, -1 ask, 0 none (an empty diff: price = qty = NaN). update_id/first_update_id/
-- prev_update_id = seq/first_seq/prev_seq (u, U, pu). Hot: kept 7 days after they were stored.
CREATE TABLE IF NOT EXISTS book_diffs
(
    venue            LowCardinality(String),
    symbol           LowCardinality(String),
    ts               DateTime64(9, 'UTC') CODEC(Delta, ZSTD),
    exchange_ts      Int64 CODEC(Delta, ZSTD),
    ingest_ts        Int64 CODEC(Delta, ZSTD),
    ingest_pos       UInt32 CODEC(ZSTD),
    kind             UInt32 CODEC(ZSTD),
    side             Int8,
    last_in_msg      UInt8,
    price            Float64 CODEC(ZSTD),
    qty              Float64 CODEC(ZSTD),
    update_id        Int64 CODEC(Delta, ZSTD),
    first_update_id  Int64 CODEC(Delta, ZSTD),
    prev_update_id   Int64 CODEC(Delta, ZSTD),
    stored_at        DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts)
ORDER BY (venue, symbol, ts, ingest_ts, ingest_pos)
TTL stored_at + INTERVAL 7 DAY
SETTINGS non_replicated_deduplication_window = 1000;

-- The book top after each applied depth/snapshot message (engine/book: book_top_dtype(levels)): level 1 as
-- scalars, the top N levels as arrays (best first; NaN beyond the book's depth). seq = the book's update id.
CREATE TABLE IF NOT EXISTS book_top
(
    venue        LowCardinality(String),
    symbol       LowCardinality(String),
    ts           DateTime64(9, 'UTC') CODEC(Delta, ZSTD),
    exchange_ts  Int64 CODEC(Delta, ZSTD),
    ingest_ts    Int64 CODEC(Delta, ZSTD),
    seq          Int64 CODEC(Delta, ZSTD),
    synced       UInt8,
    crossed      UInt8,
    degraded     UInt8,
    bid_px       Float64 CODEC(ZSTD),
    bid_qty      Float64 CODEC(ZSTD),
    ask_px       Float64 CODEC(ZSTD),
    ask_qty      Float64 CODEC(ZSTD),
    bids_px      Array(Float64) CODEC(ZSTD),
    bids_qty     Array(Float64) CODEC(ZSTD),
    asks_px      Array(Float64) CODEC(ZSTD),
    asks_qty     Array(Float64) CODEC(ZSTD),
    stored_at    DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts)
ORDER BY (venue, symbol, ts, seq, ingest_ts)
TTL stored_at + INTERVAL 30 DAY
SETTINGS non_replicated_deduplication_window = 1000;

-- MARK events: mark price (NaN when unknown) and funding rate (NaN when empty); next_funding_ms = seq.
CREATE TABLE IF NOT EXISTS mark_funding
(
    venue            LowCardinality(String),
    symbol           LowCardinality(String),
    ts               DateTime64(9, 'UTC') CODEC(Delta, ZSTD),
    exchange_ts      Int64 CODEC(Delta, ZSTD),
    ingest_ts        Int64 CODEC(Delta, ZSTD),
    ingest_pos       UInt32 CODEC(ZSTD),
    kind             UInt32 CODEC(ZSTD),
    mark_price       Float64 CODEC(ZSTD),
    funding_rate     Float64 CODEC(ZSTD),
    next_funding_ms  Int64 CODEC(Delta, ZSTD)
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts)
ORDER BY (venue, symbol, ts, ingest_ts, ingest_pos)
SETTINGS non_replicated_deduplication_window = 1000;

-- OPEN_INTEREST events (base units).
CREATE TABLE IF NOT EXISTS open_interest
(
    venue          LowCardinality(String),
    symbol         LowCardinality(String),
    ts             DateTime64(9, 'UTC') CODEC(Delta, ZSTD),
    exchange_ts    Int64 CODEC(Delta, ZSTD),
    ingest_ts      Int64 CODEC(Delta, ZSTD),
    ingest_pos     UInt32 CODEC(ZSTD),
    kind           UInt32 CODEC(ZSTD),
    open_interest  Float64 CODEC(ZSTD)
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts)
ORDER BY (venue, symbol, ts, ingest_ts, ingest_pos)
SETTINGS non_replicated_deduplication_window = 1000;

-- LIQUIDATION events (forced orders): average fill price, filled quantity, side of the order (+1 BUY, -1 SELL).
CREATE TABLE IF NOT EXISTS liquidations
(
    venue        LowCardinality(String),
    symbol       LowCardinality(String),
    ts           DateTime64(9, 'UTC') CODEC(Delta, ZSTD),
    exchange_ts  Int64 CODEC(Delta, ZSTD),
    ingest_ts    Int64 CODEC(Delta, ZSTD),
    ingest_pos   UInt32 CODEC(ZSTD),
    kind         UInt32 CODEC(ZSTD),
    price        Float64 CODEC(ZSTD),
    qty          Float64 CODEC(ZSTD),
    side         Int8
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts)
ORDER BY (venue, symbol, ts, ingest_ts, ingest_pos)
SETTINGS non_replicated_deduplication_window = 1000;

-- Closed exchange klines (KLINE_DTYPE). ts = open_ts; interval_ns = close_ts + 1 ms - open_ts; NaN/-1 where
-- the source has no quote volume, taker split or trade count.
CREATE TABLE IF NOT EXISTS klines
(
    venue             LowCardinality(String),
    symbol            LowCardinality(String),
    interval_ns       Int64,
    ts                DateTime64(9, 'UTC') CODEC(Delta, ZSTD),
    open_ts           Int64 CODEC(Delta, ZSTD),
    close_ts          Int64 CODEC(Delta, ZSTD),
    open              Float64 CODEC(ZSTD),
    high              Float64 CODEC(ZSTD),
    low               Float64 CODEC(ZSTD),
    close             Float64 CODEC(ZSTD),
    volume            Float64 CODEC(ZSTD),
    quote_volume      Float64 CODEC(ZSTD),
    taker_buy_volume  Float64 CODEC(ZSTD),
    trades            Int64 CODEC(ZSTD)
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts)
ORDER BY (venue, symbol, interval_ns, ts)
SETTINGS non_replicated_deduplication_window = 1000;
