// Schema migrations, applied in order and recorded, identical for PGlite and PostgreSQL.
export const MIGRATIONS: { id: number; sql: string }[] = [
  {
    id: 1,
    sql: `CREATE TABLE IF NOT EXISTS records (
            ns TEXT NOT NULL,
            key TEXT NOT NULL,
            value JSONB NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (ns, key)
          )`,
  },
  {
    id: 2,
    // The audit store: one row per event, searchable columns beside the event as received.
    sql: `CREATE TABLE IF NOT EXISTS audit_events (
            seq BIGSERIAL PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            time TIMESTAMPTZ NOT NULL,
            component TEXT NOT NULL,
            sub TEXT,
            client_id TEXT,
            spiffe_id TEXT,
            route TEXT,
            decision TEXT,
            policies TEXT[] NOT NULL,
            event JSONB NOT NULL,
            received_at TIMESTAMPTZ NOT NULL DEFAULT now()
          );
          CREATE INDEX IF NOT EXISTS audit_events_time ON audit_events (time DESC, seq DESC)`,
  },
];
