-- Features, data quality and per-trade PnL (conventions as 001/002).

-- Feature rows as parallel name/value arrays: one row per emitted feature row of one feature set
-- ('book', 'bar:1s', 'bar:1m', a model's input view, ...). Why not a wide table: the feature sets change
-- with the models (a ModelVersion records its own list), and a wide table would need a migration per added
-- feature and one table per set; here a new feature is a new name in feature_names, and a row still says which
-- features it holds. The names repeat on every row but cost almost nothing stored (LowCardinality
-- dictionary and ZSTD). Read one feature with feature_values[indexOf(feature_names, 'ofi1')]. NaN = not computed.
CREATE TABLE IF NOT EXISTS features
(
    venue           LowCardinality(String),
    symbol          LowCardinality(String),
    feature_set     LowCardinality(String),
    ts              DateTime64(9, 'UTC') CODEC(Delta, ZSTD),
    exchange_ts     Int64 CODEC(Delta, ZSTD),
    ingest_ts       Int64 CODEC(Delta, ZSTD),
    flags           UInt32,
    feature_names   Array(LowCardinality(String)),
    feature_values  Array(Float64) CODEC(ZSTD),
    stored_at       DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts)
ORDER BY (venue, symbol, feature_set, ts, ingest_ts)
TTL stored_at + INTERVAL 30 DAY
SETTINGS non_replicated_deduplication_window = 1000;

-- Data quality per symbol and time: one row per finding.
--   check_name 'gap'         a book chain break (engine/book GAP_DTYPE): reason, expected/got ids, seq = u
--   check_name 'resync'      a request for a fresh REST snapshot: reason
--   check_name 'ingest_lag'  the ingest's lag sample: value = ingest_ts - exchange_ts in ms
--   check_name 'degraded'    events flagged DEGRADED by the quality checks: value = how many
-- value is NaN and expected/got/seq 0 where a check has none.
CREATE TABLE IF NOT EXISTS data_quality
(
    venue        LowCardinality(String),
    symbol       LowCardinality(String),
    ts           DateTime64(9, 'UTC') CODEC(Delta, ZSTD),
    check_name   LowCardinality(String),
    reason       LowCardinality(String),
    value        Float64 CODEC(ZSTD),
    expected     Int64 CODEC(ZSTD),
    got          Int64 CODEC(ZSTD),
    seq          Int64 CODEC(ZSTD),
    exchange_ts  Int64 CODEC(Delta, ZSTD),
    detail       String CODEC(ZSTD)
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts)
ORDER BY (venue, symbol, ts, check_name, reason, seq)
SETTINGS non_replicated_deduplication_window = 1000;

-- One row per closed trade (round trip) of a strategy: entry to exit. ts = exit_ts. USDT amounts; fees
-- negative = rebate; funding paid positive; net = gross - fees - funding; return_bps of the entry notional.
CREATE TABLE IF NOT EXISTS pnl
(
    run_id       LowCardinality(String) DEFAULT '',
    strategy     LowCardinality(String),
    symbol       LowCardinality(String),
    ts           DateTime64(9, 'UTC') CODEC(Delta, ZSTD),
    venue        LowCardinality(String),
    intent_id    String CODEC(ZSTD),
    side         Int8,                                   -- +1 long, -1 short
    qty          Float64 CODEC(ZSTD),
    entry_ts     Int64 CODEC(Delta, ZSTD),
    exit_ts      Int64 CODEC(Delta, ZSTD),
    entry_px     Float64 CODEC(ZSTD),
    exit_px      Float64 CODEC(ZSTD),
    gross        Float64 CODEC(ZSTD),
    fees         Float64 CODEC(ZSTD),
    funding      Float64 CODEC(ZSTD),
    net          Float64 CODEC(ZSTD),
    return_bps   Float64 CODEC(ZSTD),
    exit_reason  LowCardinality(String)                  -- take-profit | stop | time | signal | manual | ...
)
ENGINE = MergeTree
PARTITION BY toDate(ts)
ORDER BY (strategy, symbol, ts)
SETTINGS non_replicated_deduplication_window = 1000;
