import { boardRows, type BoardRow } from '../../db/queries/board.js';
import type { Tx } from '../service.js';

export type { BoardRow };

export type BoardStatus = 'in' | 'not_in' | 'left';

export interface Board {
  /** The company's local date, YYYY-MM-DD. */
  day: string;
  rows: (BoardRow & { status: BoardStatus })[];
  counts: { in: number; notIn: number; left: number; outside: number; flagged: number; offline: number };
}

/**
 * Today's board for the caller (a manager: their teams): who is in, not yet in, already gone, and how many
 * were outside the geofence, flagged for review or checked in offline today.
 */
export async function todaysBoard(tx: Tx): Promise<Board> {
  const { day, rows } = await boardRows(tx.q, tx.caller, tx.now());
  const statusOf = (r: BoardRow): BoardStatus =>
    r.lastKind === 'check_in' ? 'in' : r.lastKind === 'check_out' ? 'left' : 'not_in';
  const list = rows.map((r) => ({ ...r, status: statusOf(r) }));
  const count = (f: (r: (typeof list)[number]) => boolean) => list.filter(f).length;
  return {
    day,
    rows: list,
    counts: {
      in: count((r) => r.status === 'in'),
      notIn: count((r) => r.status === 'not_in'),
      left: count((r) => r.status === 'left'),
      outside: count((r) => r.outside),
      flagged: count((r) => r.flagged),
      offline: count((r) => r.offline),
    },
  };
}
