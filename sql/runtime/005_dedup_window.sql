-- Insert de-duplication for the runtime tables of 001 (002-004 create theirs with it): a block identical to
-- one of the table's last 1000 inserted blocks (or carrying the same insert_deduplication_token) is dropped,
-- so a retried insert does not duplicate rows. Servers without non_replicated_deduplication_window (ClickHouse
-- before 20.11, e.g. 18.16) skip these statements; the ClickHouse-server store de-duplicates there with its
-- insert ledger instead (workloads/store/clickhouse_server.py).
ALTER TABLE signals MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE intents MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE orders MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE fills MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE positions MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE equity MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE risk_events MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE rejections MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE audit MODIFY SETTING non_replicated_deduplication_window = 1000;
