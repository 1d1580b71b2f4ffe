-- drill-checks.sql — what the restored data must look like: `pgark drill --sql FILE`.
--
-- Each statement must return one row whose first column is true; any other answer (false,
-- NULL, no row, several rows, an error) fails the drill (exit 3) and names the statement,
-- its line and what it returned. Statements end with ';' as in psql, and may span lines.
-- They run in database "postgres" until a line "\c DATABASE" names another.
--
-- Checks that hold at any point in time suit every drill (a drill may go to a random
-- target): that the tables exist, hold rows and keep their invariants. A check of how
-- recent the newest row is suits drills to latest only (the last but one below). Adapt
-- the names to your schema.

-- The server is the one restored, promoted, writable.
SELECT NOT pg_is_in_recovery();

-- Every database that should be there is.
SELECT count(*) = 1 FROM pg_database WHERE datname = 'app';

\c app

-- The core tables exist and are not empty.
SELECT to_regclass('public.orders') IS NOT NULL;
SELECT EXISTS (SELECT 1 FROM public.orders);

-- An invariant of the data: no order line without its order.
SELECT NOT EXISTS (
    SELECT 1
      FROM public.order_lines l
      LEFT JOIN public.orders o ON o.id = l.order_id
     WHERE o.id IS NULL);

-- The newest row is recent: for a drill to latest, within the RPO (here 15 minutes) of
-- the moment the drill restored to.
SELECT max(created_at) > now() - interval '15 minutes' FROM public.orders;

-- Sequences are ahead of the rows they number (a restore that lost WAL shows here).
SELECT (SELECT last_value FROM public.orders_id_seq) >= (SELECT coalesce(max(id), 0) FROM public.orders);
