-- The event feed no longer waits for the cluster's oldest transaction (issue 14 item 4).
-- Events are inserted unnumbered; a single publisher (events_publish,
-- sql/functions/events.sql) gives committed ones their place in the feed, `seq`, in id
-- order, one publisher at a time; readers read only numbered rows, by seq
-- (docs/design.md, "The event feed").
CREATE SEQUENCE events_seq AS bigint;
ALTER TABLE events ADD COLUMN seq bigint;

-- Events already committed keep the order the old cursor gave them, (txid, id).
UPDATE events e SET seq = o.n
  FROM (SELECT id, row_number() OVER (ORDER BY txid, id) AS n FROM events) o
 WHERE e.id = o.id;
SELECT setval('events_seq', coalesce((SELECT max(seq) FROM events), 0) + 1, false);

CREATE UNIQUE INDEX events_by_seq ON events (seq);
CREATE INDEX events_unpublished ON events (id) WHERE seq IS NULL;
