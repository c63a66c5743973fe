-- Backtest outputs, one row set per run (run_id), written by tradeplane.workloads.backtest.tables.
-- Columns follow the Parquet files in order and type, so a run loads with
--   INSERT INTO backtest_fills SELECT * FROM file('fills.parquet', Parquet)
-- ts is the table's main time as DateTime64(9, 'UTC'), the *_ts columns keep the exact int64 nanoseconds,
-- and every *_name column spells out the int code before it (side_name 'BUY' for side 1).

CREATE TABLE IF NOT EXISTS backtest_fills
(
    run_id       LowCardinality(String),
    symbol       LowCardinality(String),
    symbol_id    UInt32,
    ts           DateTime64(9, 'UTC') CODEC(Delta, ZSTD),  -- exch_ts
    seq          Int64 CODEC(Delta, ZSTD),                 -- row in the result (order received)
    order_id     Int64 CODEC(ZSTD),
    side         Int8,
    side_name    LowCardinality(String),
    maker        UInt8,                                    -- 1 passive, 0 taker
    px           Float64 CODEC(ZSTD),
    qty          Float64 CODEC(ZSTD),
    fee          Float64 CODEC(ZSTD),                      -- settlement currency, negative = rebate
    exch_ts      Int64 CODEC(Delta, ZSTD),
    local_ts     Int64 CODEC(Delta, ZSTD),
    mid_at_send  Float64 CODEC(ZSTD)
)
ENGINE = MergeTree
PARTITION BY toDate(ts)
ORDER BY (symbol, ts);

CREATE TABLE IF NOT EXISTS backtest_orders
(
    run_id       LowCardinality(String),
    symbol       LowCardinality(String),
    symbol_id    UInt32,
    ts           DateTime64(9, 'UTC') CODEC(Delta, ZSTD),  -- update_ts
    seq          Int64 CODEC(Delta, ZSTD),                 -- row in the result
    order_id     Int64 CODEC(ZSTD),
    side         Int8,
    side_name    LowCardinality(String),
    type         Int8,
    type_name    LowCardinality(String),
    tif          Int8,
    tif_name     LowCardinality(String),
    flags        Int8,
    status       Int8,
    status_name  LowCardinality(String),
    reason       Int8,
    reason_name  LowCardinality(String),
    price_tick   Int64 CODEC(ZSTD),
    stop_tick    Int64 CODEC(ZSTD),
    qty          Float64 CODEC(ZSTD),
    filled       Float64 CODEC(ZSTD),
    avg_px       Float64 CODEC(ZSTD),                      -- NaN before the first fill
    queue_ahead  Float64 CODEC(ZSTD),
    oco_id       Int64 CODEC(ZSTD),
    local_ts     Int64 CODEC(Delta, ZSTD),
    exch_ts      Int64 CODEC(Delta, ZSTD),
    update_ts    Int64 CODEC(Delta, ZSTD),
    report_ts    Int64 CODEC(Delta, ZSTD)                  -- local time the report reached the strategy
)
ENGINE = MergeTree
PARTITION BY toDate(ts)
ORDER BY (symbol, ts);

CREATE TABLE IF NOT EXISTS backtest_parents
(
    run_id        LowCardinality(String),
    symbol        LowCardinality(String),
    symbol_id     UInt32,
    ts            DateTime64(9, 'UTC') CODEC(Delta, ZSTD),  -- send_ts
    parent_id     Int64 CODEC(ZSTD),
    side          Int8,
    side_name     LowCardinality(String),
    style         Int8,
    style_name    LowCardinality(String),
    status        Int8,
    status_name   LowCardinality(String),
    degraded      UInt8,
    qty           Float64 CODEC(ZSTD),
    filled        Float64 CODEC(ZSTD),
    maker_qty     Float64 CODEC(ZSTD),
    taker_qty     Float64 CODEC(ZSTD),
    vwap          Float64 CODEC(ZSTD),                      -- NaN without fills
    fees          Float64 CODEC(ZSTD),
    notional      Float64 CODEC(ZSTD),
    mid_at_send   Float64 CODEC(ZSTD),
    slippage_bps  Float64 CODEC(ZSTD),
    cost_bps      Float64 CODEC(ZSTD),                      -- positive = paid versus mid
    n_children    Int64 CODEC(ZSTD),
    send_ts       Int64 CODEC(Delta, ZSTD),
    done_ts       Int64 CODEC(Delta, ZSTD)                  -- 0 while working
)
ENGINE = MergeTree
PARTITION BY toDate(ts)
ORDER BY (symbol, ts);

CREATE TABLE IF NOT EXISTS backtest_equity
(
    run_id      LowCardinality(String),
    symbol      LowCardinality(String),                     -- '*' when the curve sums several symbols
    symbol_id   UInt32,
    ts          DateTime64(9, 'UTC') CODEC(Delta, ZSTD),   -- local_ts
    local_ts    Int64 CODEC(Delta, ZSTD),
    equity      Float64 CODEC(ZSTD),
    position    Float64 CODEC(ZSTD),
    realized    Float64 CODEC(ZSTD),
    unrealized  Float64 CODEC(ZSTD),
    fees        Float64 CODEC(ZSTD),
    funding     Float64 CODEC(ZSTD)
)
ENGINE = MergeTree
PARTITION BY toDate(ts)
ORDER BY (symbol, ts);

CREATE TABLE IF NOT EXISTS backtest_marks
(
    run_id     LowCardinality(String),
    symbol     LowCardinality(String),
    symbol_id  UInt32,
    ts         DateTime64(9, 'UTC') CODEC(Delta, ZSTD),    -- local_ts
    local_ts   Int64 CODEC(Delta, ZSTD),
    bid        Float64 CODEC(ZSTD),
    ask        Float64 CODEC(ZSTD),
    mid        Float64 CODEC(ZSTD)
)
ENGINE = MergeTree
PARTITION BY toDate(ts)
ORDER BY (symbol, ts);
