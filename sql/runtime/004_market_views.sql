-- Aggregates the trades table (002) maintains on insert: 1 s and 1 m bars, and volume buckets with their
-- VPIN and Kyle lambda. Each is a materialized view into an AggregatingMergeTree of aggregate states (these
-- work on every server version, ClickHouse 18.16 included), read through a plain view that merges the states.
-- Bars and buckets count every row of trades: write one trade kind per stream (trades or aggTrades, as the
-- engine's clocks assume). open/close are the first/last trade by trade id (the exchange's order).
-- A block the server drops as a duplicate (non_replicated_deduplication_window, where available) is dropped
-- from the views too; see docs/dataplane.md for what each server version guarantees. The state tables have
-- no column a view does not write: a view's insert on 18.16 fills no DEFAULT.

CREATE TABLE IF NOT EXISTS bars_1s_state
(
    venue         LowCardinality(String),
    symbol        LowCardinality(String),
    ts            DateTime64(9, 'UTC') CODEC(Delta, ZSTD),   -- bar start (second)
    open          AggregateFunction(argMin, Float64, Int64),
    high          AggregateFunction(max, Float64),
    low           AggregateFunction(min, Float64),
    close         AggregateFunction(argMax, Float64, Int64),
    volume        AggregateFunction(sum, Float64),
    quote_volume  AggregateFunction(sum, Float64),
    buy_volume    AggregateFunction(sum, Float64),
    buy_quote     AggregateFunction(sum, Float64),
    trades        AggregateFunction(count)
)
ENGINE = AggregatingMergeTree
PARTITION BY toDate(ts)
ORDER BY (venue, symbol, ts)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS bars_1m_state
(
    venue         LowCardinality(String),
    symbol        LowCardinality(String),
    ts            DateTime64(9, 'UTC') CODEC(Delta, ZSTD),   -- bar start (minute)
    open          AggregateFunction(argMin, Float64, Int64),
    high          AggregateFunction(max, Float64),
    low           AggregateFunction(min, Float64),
    close         AggregateFunction(argMax, Float64, Int64),
    volume        AggregateFunction(sum, Float64),
    quote_volume  AggregateFunction(sum, Float64),
    buy_volume    AggregateFunction(sum, Float64),
    buy_quote     AggregateFunction(sum, Float64),
    trades        AggregateFunction(count)
)
ENGINE = AggregatingMergeTree
PARTITION BY toDate(ts)
ORDER BY (venue, symbol, ts)
SETTINGS non_replicated_deduplication_window = 1000;

-- The bar start is computed from the exact int64 exchange_ts (portable: no DateTime64 arithmetic); the alias
-- ts stands for it in the whole query (ClickHouse aliases win over columns), and 18.16 runs no subquery in a
-- materialized view.
CREATE MATERIALIZED VIEW IF NOT EXISTS bars_1s_mv TO bars_1s_state AS
SELECT
    venue, symbol, fromUnixTimestamp64Nano(intDiv(exchange_ts, 1000000000) * 1000000000) AS ts,
    argMinState(price, trade_id) AS open, maxState(price) AS high, minState(price) AS low,
    argMaxState(price, trade_id) AS close, sumState(qty) AS volume, sumState(price * qty) AS quote_volume,
    sumState(if(side > 0, qty, 0.)) AS buy_volume, sumState(if(side > 0, price * qty, 0.)) AS buy_quote,
    countState() AS trades
FROM trades
GROUP BY venue, symbol, ts;

CREATE MATERIALIZED VIEW IF NOT EXISTS bars_1m_mv TO bars_1m_state AS
SELECT
    venue, symbol, fromUnixTimestamp64Nano(intDiv(exchange_ts, 60000000000) * 60000000000) AS ts,
    argMinState(price, trade_id) AS open, maxState(price) AS high, minState(price) AS low,
    argMaxState(price, trade_id) AS close, sumState(qty) AS volume, sumState(price * qty) AS quote_volume,
    sumState(if(side > 0, qty, 0.)) AS buy_volume, sumState(if(side > 0, price * qty, 0.)) AS buy_quote,
    countState() AS trades
FROM trades
GROUP BY venue, symbol, ts;

-- OHLCV bars: vwap = quote_volume / volume; buy_volume and buy_quote are the taker buys.
CREATE VIEW IF NOT EXISTS bars_1s AS
SELECT venue, symbol, ts, o AS open, h AS high, l AS low, c AS close, v AS volume, qv AS quote_volume,
       qv / v AS vwap, bv AS buy_volume, bq AS buy_quote, n AS trades
FROM
(
    SELECT venue, symbol, ts, argMinMerge(open) AS o, maxMerge(high) AS h, minMerge(low) AS l,
           argMaxMerge(close) AS c, sumMerge(volume) AS v, sumMerge(quote_volume) AS qv,
           sumMerge(buy_volume) AS bv, sumMerge(buy_quote) AS bq, countMerge(trades) AS n
    FROM bars_1s_state
    GROUP BY venue, symbol, ts
);

CREATE VIEW IF NOT EXISTS bars_1m AS
SELECT venue, symbol, ts, o AS open, h AS high, l AS low, c AS close, v AS volume, qv AS quote_volume,
       qv / v AS vwap, bv AS buy_volume, bq AS buy_quote, n AS trades
FROM
(
    SELECT venue, symbol, ts, argMinMerge(open) AS o, maxMerge(high) AS h, minMerge(low) AS l,
           argMaxMerge(close) AS c, sumMerge(volume) AS v, sumMerge(quote_volume) AS qv,
           sumMerge(buy_volume) AS bv, sumMerge(buy_quote) AS bq, countMerge(trades) AS n
    FROM bars_1m_state
    GROUP BY venue, symbol, ts
);

-- Volume buckets. Which bucket a trade belongs to is decided by the writer at insert time (trades.vbucket =
-- floor(quote volume of the stream before the trade / vbucket_quote)): a bucket boundary depends on every
-- earlier trade of the stream, which an insert-time view cannot see (and the 18.16 server has no window
-- functions to find it at query time). A trade is not split across buckets. The view keeps per-bucket sums;
-- VPIN and Kyle lambda are computed from them when read (vbuckets):
--   vpin        = |buy quote - sell quote| / (buy quote + sell quote)
--   kyle_lambda = OLS slope, with intercept, of dpx (price change since the stream's previous trade) on
--                 the signed quantity (side * qty) over the bucket's trades: (n Sxy - Sx Sy) / (n Sxx - Sx^2);
--                 NaN when the signed quantity does not vary. Quote per base, per base unit of net taker buying.
-- A window of w buckets (as the engine's features use) is a ratio of the summed columns over w rows.
CREATE TABLE IF NOT EXISTS vbuckets_state
(
    venue         LowCardinality(String),
    symbol        LowCardinality(String),
    bucket_quote  Float64,                                   -- the bucket size, quote currency
    bucket        Int64,
    start_ts      AggregateFunction(min, Int64),
    end_ts        AggregateFunction(max, Int64),
    open          AggregateFunction(argMin, Float64, Int64),
    close         AggregateFunction(argMax, Float64, Int64),
    buy_quote     AggregateFunction(sum, Float64),
    sell_quote    AggregateFunction(sum, Float64),
    buy_volume    AggregateFunction(sum, Float64),
    sell_volume   AggregateFunction(sum, Float64),
    trades        AggregateFunction(count),
    n_xy          AggregateFunction(sum, UInt64),
    sx            AggregateFunction(sum, Float64),
    sy            AggregateFunction(sum, Float64),
    sxx           AggregateFunction(sum, Float64),
    sxy           AggregateFunction(sum, Float64)
)
ENGINE = AggregatingMergeTree
ORDER BY (venue, symbol, bucket_quote, bucket)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS vbuckets_mv TO vbuckets_state AS
SELECT
    venue, symbol, vbucket_quote AS bucket_quote, vbucket AS bucket,
    minState(exchange_ts) AS start_ts, maxState(exchange_ts) AS end_ts,
    argMinState(price, trade_id) AS open, argMaxState(price, trade_id) AS close,
    sumState(if(side > 0, price * qty, 0.)) AS buy_quote, sumState(if(side < 0, price * qty, 0.)) AS sell_quote,
    sumState(if(side > 0, qty, 0.)) AS buy_volume, sumState(if(side < 0, qty, 0.)) AS sell_volume,
    countState() AS trades,
    sumState(toUInt64(isFinite(dpx))) AS n_xy,
    sumState(if(isFinite(dpx), side * qty, 0.)) AS sx,
    sumState(if(isFinite(dpx), dpx, 0.)) AS sy,
    sumState(if(isFinite(dpx), side * qty * side * qty, 0.)) AS sxx,
    sumState(if(isFinite(dpx), side * qty * dpx, 0.)) AS sxy
FROM trades
WHERE vbucket >= 0
GROUP BY venue, symbol, vbucket_quote, vbucket;

CREATE VIEW IF NOT EXISTS vbuckets AS
SELECT venue, symbol, bucket_quote, bucket, t0 AS start_ts, t1 AS end_ts, o AS open, c AS close,
       bq AS buy_quote, sq AS sell_quote, bv AS buy_volume, sv AS sell_volume, n AS trades,
       bq + sq AS quote_volume,
       abs(bq - sq) / (bq + sq) AS vpin,
       if(m * xx - x * x > 0, (m * xy - x * y) / (m * xx - x * x), nan) AS kyle_lambda,
       m AS n_xy, x AS sx, y AS sy, xx AS sxx, xy AS sxy
FROM
(
    SELECT venue, symbol, bucket_quote, bucket, minMerge(start_ts) AS t0, maxMerge(end_ts) AS t1,
           argMinMerge(open) AS o, argMaxMerge(close) AS c, sumMerge(buy_quote) AS bq,
           sumMerge(sell_quote) AS sq, sumMerge(buy_volume) AS bv, sumMerge(sell_volume) AS sv,
           countMerge(trades) AS n, sumMerge(n_xy) AS m, sumMerge(sx) AS x, sumMerge(sy) AS y,
           sumMerge(sxx) AS xx, sumMerge(sxy) AS xy
    FROM vbuckets_state
    GROUP BY venue, symbol, bucket_quote, bucket
);
