-- Runtime tables of a strategy run (tradeplane run / demo), written through tradeplane.workloads.store.
-- Applied by the migration runner (tradeplane.workloads.store.migrations), which records the version in
-- schema_migrations; every statement is idempotent (IF NOT EXISTS) so a half-applied file can be re-run.
--
-- Conventions (as sql/backtest): ts is the table's main time as DateTime64(9, 'UTC') and leads the sort key
-- after the entity; the *_ts columns keep the exact int64 nanoseconds of the record (ts repeats one of
-- them, named per table). run_id tells local runs apart in one store ('' when the writer sets none).
-- Strings that repeat (names, codes) are LowCardinality; times Delta+ZSTD; floats ZSTD; NaN is a value
-- (never NULL): a field not computed is NaN, as in the Signal. Booleans are UInt8 (0/1), as the ClickHouse
-- 18.16 server has no Bool. Append-only: a row per event, the latest row per key is the current state.

-- One row per decision, taken or not: every Signal field (signal.proto). ts = exchange_ts.
-- contributions and shadow scores are parallel arrays: (contribution_names[i], contribution_values[i]),
-- (shadow_versions[i], shadow_p_up[i]), in the Signal's order.
CREATE TABLE IF NOT EXISTS signals
(
    run_id               LowCardinality(String) DEFAULT '',
    strategy             LowCardinality(String),
    symbol               LowCardinality(String),
    ts                   DateTime64(9, 'UTC') CODEC(Delta, ZSTD),
    signal_id            String CODEC(ZSTD),
    venue                LowCardinality(String),
    exchange_ts          Int64 CODEC(Delta, ZSTD),
    ingest_ts            Int64 CODEC(Delta, ZSTD),
    infer_ts             Int64 CODEC(Delta, ZSTD),
    p_up                 Float64 CODEC(ZSTD),
    p_low                Float64 CODEC(ZSTD),
    p_high               Float64 CODEC(ZSTD),
    expected_return_bps  Float64 CODEC(ZSTD),
    cost_bps             Float64 CODEC(ZSTD),
    utility              Float64 CODEC(ZSTD),
    fee_bps              Float64 CODEC(ZSTD),
    slippage_bps         Float64 CODEC(ZSTD),
    funding_bps          Float64 CODEC(ZSTD),
    decision             LowCardinality(String),             -- enter-long | enter-short | skip
    reason               LowCardinality(String),             -- '' when entered, else one reason code
    reason_detail        String CODEC(ZSTD),
    regime               LowCardinality(String),
    contribution_names   Array(LowCardinality(String)),
    contribution_values  Array(Float64),
    model_version        LowCardinality(String),
    shadow_versions      Array(LowCardinality(String)),
    shadow_p_up          Array(Float64),
    config_rev           LowCardinality(String),
    cooldown_until       Int64 CODEC(ZSTD),                  -- ns; 0 when no cooldown applies
    latency_ns           Int64 CODEC(ZSTD),
    size_mult            Float64 CODEC(ZSTD),
    tp_mult              Float64 CODEC(ZSTD),
    sl_mult              Float64 CODEC(ZSTD),
    rules_fired          Array(LowCardinality(String)),
    quality_flags        UInt32                              -- 1 data degraded, 2 model degraded, 4 shadow error
)
ENGINE = MergeTree
PARTITION BY toDate(ts)
ORDER BY (strategy, symbol, ts);

-- One row per Intent (entered signals). ts = exchange_ts.
CREATE TABLE IF NOT EXISTS intents
(
    run_id             LowCardinality(String) DEFAULT '',
    strategy           LowCardinality(String),
    symbol             LowCardinality(String),
    ts                 DateTime64(9, 'UTC') CODEC(Delta, ZSTD),
    intent_id          String CODEC(ZSTD),
    signal_id          String CODEC(ZSTD),
    venue              LowCardinality(String),
    side               Int8,                                 -- +1 long, -1 short (entry direction)
    qty                Float64 CODEC(ZSTD),                  -- base units
    notional_usdt      Float64 CODEC(ZSTD),
    price              Float64 CODEC(ZSTD),                  -- reference mid
    stop_price         Float64 CODEC(ZSTD),
    take_profit_price  Float64 CODEC(ZSTD),
    leverage           Int32,
    oco                UInt8,
    exchange_ts        Int64 CODEC(Delta, ZSTD),
    config_rev         LowCardinality(String)
)
ENGINE = MergeTree
PARTITION BY toDate(ts)
ORDER BY (strategy, symbol, ts);

-- One row per order state change (sent, acknowledged, filled, cancelled, rejected, expired).
-- ts = the time of this state: send_ts for the row that sent it, else the venue's update time.
CREATE TABLE IF NOT EXISTS orders
(
    run_id           LowCardinality(String) DEFAULT '',
    strategy         LowCardinality(String),
    symbol           LowCardinality(String),
    ts               DateTime64(9, 'UTC') CODEC(Delta, ZSTD),
    client_order_id  String CODEC(ZSTD),                     -- derived from intent_id and the leg
    intent_id        String CODEC(ZSTD),
    venue            LowCardinality(String),
    side             Int8,                                   -- +1 buy, -1 sell
    qty              Float64 CODEC(ZSTD),
    price            Float64 CODEC(ZSTD),                    -- limit or stop price; NaN for market orders
    type             LowCardinality(String),                 -- MARKET | LIMIT | STOP_MARKET | ...
    status           LowCardinality(String),                 -- NEW | PARTIALLY_FILLED | FILLED | CANCELED | REJECTED | EXPIRED
    filled_qty       Float64 CODEC(ZSTD),
    send_ts          Int64 CODEC(Delta, ZSTD),
    ack_ts           Int64 CODEC(Delta, ZSTD),               -- 0 until the venue acknowledged
    reason           String CODEC(ZSTD)                      -- why it was cancelled or rejected; '' otherwise
)
ENGINE = MergeTree
PARTITION BY toDate(ts)
ORDER BY (strategy, symbol, ts);

-- One row per fill. ts = exchange_ts (when the trade happened at the venue).
CREATE TABLE IF NOT EXISTS fills
(
    run_id           LowCardinality(String) DEFAULT '',
    strategy         LowCardinality(String),
    symbol           LowCardinality(String),
    ts               DateTime64(9, 'UTC') CODEC(Delta, ZSTD),
    venue            LowCardinality(String),
    side             Int8,                                   -- +1 buy, -1 sell
    qty              Float64 CODEC(ZSTD),
    price            Float64 CODEC(ZSTD),
    fee              Float64 CODEC(ZSTD),                    -- USDT; negative = rebate
    liquidity        LowCardinality(String),                 -- maker | taker
    client_order_id  String CODEC(ZSTD),
    trade_id         String CODEC(ZSTD),                     -- the venue's trade id
    exchange_ts      Int64 CODEC(Delta, ZSTD),
    ingest_ts        Int64 CODEC(Delta, ZSTD)
)
ENGINE = MergeTree
PARTITION BY toDate(ts)
ORDER BY (strategy, symbol, ts);

-- One row per position change of a trade (entry fill, add-on, partial, close) and per periodic mark.
CREATE TABLE IF NOT EXISTS positions
(
    run_id      LowCardinality(String) DEFAULT '',
    strategy    LowCardinality(String),
    symbol      LowCardinality(String),
    ts          DateTime64(9, 'UTC') CODEC(Delta, ZSTD),
    venue       LowCardinality(String),
    intent_id   String CODEC(ZSTD),                          -- the trade
    qty         Float64 CODEC(ZSTD),                         -- signed base units (+ long, - short)
    avg_entry   Float64 CODEC(ZSTD),                         -- NaN while flat
    realized    Float64 CODEC(ZSTD),                         -- USDT, after fees
    unrealized  Float64 CODEC(ZSTD),                         -- USDT at the mark
    state       LowCardinality(String)                       -- PENDING_ENTRY | ACTIVE | PENDING_CLOSING | CLOSED
)
ENGINE = MergeTree
PARTITION BY toDate(ts)
ORDER BY (strategy, symbol, ts);

-- Equity curve per RiskBudget and per strategy (strategy '*' = the budget's total).
CREATE TABLE IF NOT EXISTS equity
(
    run_id        LowCardinality(String) DEFAULT '',
    budget        LowCardinality(String),
    strategy      LowCardinality(String),
    ts            DateTime64(9, 'UTC') CODEC(Delta, ZSTD),
    equity        Float64 CODEC(ZSTD),                       -- USDT
    realized      Float64 CODEC(ZSTD),
    unrealized    Float64 CODEC(ZSTD),
    fees          Float64 CODEC(ZSTD),
    drawdown_pct  Float64 CODEC(ZSTD)                        -- from the running peak, percent (>= 0)
)
ENGINE = MergeTree
PARTITION BY toDate(ts)
ORDER BY (budget, strategy, ts);

-- RiskBudget phase transitions (Active / Reducing / Halted) with their reason code.
CREATE TABLE IF NOT EXISTS risk_events
(
    run_id      LowCardinality(String) DEFAULT '',
    budget      LowCardinality(String),
    ts          DateTime64(9, 'UTC') CODEC(Delta, ZSTD),
    from_phase  LowCardinality(String),
    to_phase    LowCardinality(String),
    reason      LowCardinality(String),                      -- one risk reason code
    detail      String CODEC(ZSTD)
)
ENGINE = MergeTree
PARTITION BY toDate(ts)
ORDER BY (budget, ts);

-- Every skipped decision and every order the risk engine refused, with its one reason code.
CREATE TABLE IF NOT EXISTS rejections
(
    run_id     LowCardinality(String) DEFAULT '',
    strategy   LowCardinality(String),
    symbol     LowCardinality(String),
    ts         DateTime64(9, 'UTC') CODEC(Delta, ZSTD),
    stage      LowCardinality(String),                       -- decision | risk
    reason     LowCardinality(String),                       -- reason code (engine/decision or engine/risk reasons)
    detail     String CODEC(ZSTD),
    signal_id  String CODEC(ZSTD),                           -- '' when not known
    intent_id  String CODEC(ZSTD)                            -- '' for decision rejections
)
ENGINE = MergeTree
PARTITION BY toDate(ts)
ORDER BY (strategy, symbol, ts);

-- Audit records (tradeplane.contracts.codec.audit_record) as JSON text, one per decision; the same lines
-- as the JSONL audit log. ts = the signal's exchange_ts.
CREATE TABLE IF NOT EXISTS audit
(
    run_id          LowCardinality(String) DEFAULT '',
    strategy        LowCardinality(String),
    symbol          LowCardinality(String),
    ts              DateTime64(9, 'UTC') CODEC(Delta, ZSTD),
    signal_id       String CODEC(ZSTD),
    schema_version  UInt16,
    json            String CODEC(ZSTD(3))
)
ENGINE = MergeTree
PARTITION BY toDate(ts)
ORDER BY (strategy, symbol, ts);
