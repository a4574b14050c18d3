-- A demo schema for matviews.yaml: a table and three materialized views over it.
CREATE SCHEMA IF NOT EXISTS tp_demo;
CREATE TABLE IF NOT EXISTS tp_demo.sales (day date, region text, amount numeric);
INSERT INTO tp_demo.sales
SELECT DATE '2026-01-01' + (i % 365), (ARRAY['north', 'south', 'east'])[1 + i % 3], i % 100
FROM generate_series(1, 10000) AS i;
CREATE MATERIALIZED VIEW IF NOT EXISTS tp_demo.sales_by_day AS
  SELECT day, sum(amount) AS amount FROM tp_demo.sales GROUP BY day;
CREATE MATERIALIZED VIEW IF NOT EXISTS tp_demo.sales_by_region AS
  SELECT region, sum(amount) AS amount FROM tp_demo.sales GROUP BY region;
CREATE MATERIALIZED VIEW IF NOT EXISTS tp_demo."Top Days" AS
  SELECT day, sum(amount) AS amount FROM tp_demo.sales GROUP BY day ORDER BY 2 DESC LIMIT 10;
