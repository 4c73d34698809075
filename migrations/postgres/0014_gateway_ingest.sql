-- How each gateway sends call records (domain::ingest::GatewayIngest as JSON): the format its
-- sender posts, and where in a record the caller's key, the api and the units are.
ALTER TABLE gateways ADD COLUMN ingest TEXT NOT NULL DEFAULT '{}';

-- What each replica told each gateway's sender (metering::stats::GatewayStats as JSON): its own
-- totals, written whole, so replicas never overwrite each other; an answer sums the rows.
CREATE TABLE gateway_ingest_stats (
    gateway_id TEXT NOT NULL REFERENCES gateways (id),
    replica TEXT NOT NULL,
    stats TEXT NOT NULL,
    PRIMARY KEY (gateway_id, replica)
);
