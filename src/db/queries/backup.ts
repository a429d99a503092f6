import type { Queryable } from '../pool.js';

export interface ChainState {
  /** backup_meta's database id (null before the first backup wrote one). */
  dbId: string | null;
  /** Changes with a txid below this were trimmed away by an earlier backup. */
  trimmedBefore: string;
  /** Tables that lacked the change-capture trigger and just had it attached. */
  attached: string[];
}

/**
 * What an incremental checks before choosing its parent, in one round trip: the database id and trim point
 * of backup_meta, and attendux_capture_all() (migrations/0003), which attaches the capture trigger to any
 * table that lacks it and names those tables.
 */
export async function readChainState(q: Queryable): Promise<ChainState> {
  const { rows } = await q.query<{ dbid: string | null; trimmed: string | null; attached: string[] }>(
    `SELECT (SELECT database_id::text FROM backup_meta LIMIT 1) AS dbid,
            (SELECT trimmed_before::text FROM backup_meta LIMIT 1) AS trimmed,
            ARRAY(SELECT attendux_capture_all()) AS attached`,
  );
  const r = rows[0]!;
  return { dbId: r.dbid, trimmedBefore: r.trimmed ?? '0', attached: r.attached };
}
