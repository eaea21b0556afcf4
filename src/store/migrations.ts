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
];
