import { inTransactionFrom, withTenant, type Pool } from '../../db/pool.js';
import { appendAudit, appendNext } from '../../db/queries/audit.js';
import {
  checkinContext,
  recordCheckinStatement,
  type CheckinSubject,
  type EventKind,
  type EventValues,
  type RecordedCheckin,
} from '../../db/queries/attendance.js';
import { conflict, notFound, type Caller } from '../service.js';
import { keyNotLive } from '../keys/api-keys.js';
import { checkResult, eventValues, subjectOf, type CheckResult } from './checkin.js';
import { isMismatch, judge, mismatchRecord, type CheckInput, type Keys } from './judge.js';

/** A kiosk's view of an employee: the subject and its fingerprint (attendux_checkin_version, migrations/0004). */
interface KioskContext {
  subject: CheckinSubject;
  version: string;
}

/**
 * Contexts of recently checked-in employees, by company and employee. Only a shortcut: every insert compares
 * the fingerprint with the database in the inserting statement, and a refusal is only ever given from a
 * context just loaded, so a stale entry costs a round trip, never a wrong verdict.
 */
const kioskContexts = new Map<string, KioskContext>();
const KIOSK_CONTEXTS_MAX = 20_000;
const KIOSK_ATTEMPTS = 3;

export interface KioskEnv {
  pool: Pool;
  keys: Keys;
  /** Told about each audit entry appended (the audit checkpointer). */
  noteAppend(): void;
}

/** The key as the request claims it; the statements below confirm it is live. */
export interface KioskKey {
  caller: Caller;
  keyId: string;
  /** Whether this request should record the key's last use (rate-limited by the caller). */
  touch: boolean;
  client: { ipHash: string | null; uaHash: string | null };
}

async function loadContext(env: KioskEnv, k: KioskKey, employeeId: string): Promise<KioskContext> {
  const row = await checkinContext(env.pool, k.caller.tenantId, k.keyId, employeeId);
  if (!row?.key_live) throw keyNotLive();
  if (!row.id) throw notFound('employee');
  return { subject: row, version: row.version };
}

/** Judge from the cached context when it allows; else from a context just loaded (and cache it). */
async function judged(env: KioskEnv, k: KioskKey, employeeId: string, b: CheckInput) {
  const { caller } = k;
  const who = { tenantId: caller.tenantId, viaKey: true };
  const cacheKey = `${caller.tenantId}:${employeeId}`;
  const cached = kioskContexts.get(cacheKey);
  if (cached) {
    try {
      return { context: cached, v: await judge(env.keys, who, employeeId, b, cached.subject) };
    } catch {
      // Refuse only on what the database holds now, never on a cached context.
    }
  }
  const context = await loadContext(env, k, employeeId);
  if (kioskContexts.size >= KIOSK_CONTEXTS_MAX) kioskContexts.clear();
  kioskContexts.set(cacheKey, context);
  try {
    return { context, v: await judge(env.keys, who, employeeId, b, context.subject) };
  } catch (err) {
    if (!isMismatch(err)) throw err;
    const m = mismatchRecord(caller.tenantId, employeeId, err);
    await withTenant(env.pool, caller.tenantId, (c) =>
      appendAudit(c, {
        tenantId: caller.tenantId,
        actor: caller.actor,
        action: 'attendance.face_mismatch',
        entityType: 'employee',
        entityId: employeeId,
        ...k.client,
        details: m.details,
      }),
    );
    throw m.error;
  }
}

/**
 * The event and its audit entry in one transaction, the entry right after the event (BEGIN, the statement
 * that inserts the event and opens the entry, the append, COMMIT): the MAC of the entry is computed here
 * (the database never has the key). Rolled back when the key is no longer live or the context
 * is stale.
 */
async function insertWithAudit(
  env: KioskEnv,
  k: KioskKey,
  employeeId: string,
  version: string,
  vals: EventValues,
): Promise<RecordedCheckin | undefined> {
  const tenantId = k.caller.tenantId;
  const key = { tenantId, keyId: k.keyId, touch: k.touch, employeeId, version };
  try {
    // Two round trips: BEGIN travels with the event's statement, COMMIT with the audit append.
    return await inTransactionFrom(
      env.pool,
      recordCheckinStatement(key, vals),
      async (c, first, commitWith) => {
        const row = first.rows[0] as RecordedCheckin | undefined;
        if (!row?.key_live || !row.fresh || row.id === null || row.seq === null) throw new RolledBack(row);
        const [actor, action, ipHash, uaHash] = vals.slice(11) as [string, string, string, string];
        // The statement opened the entry (seq, link, normalised details): the MAC, then the append.
        const entry = { tenantId, actor, action, entityType: 'attendance_event', entityId: String(row.id) };
        await appendNext(
          c,
          { ...entry, ipHash, uaHash },
          { seq: row.seq, at_us: row.at_us!, prev_hash: row.prev_hash!, details: row.details! },
          commitWith,
        );
        env.noteAppend();
        return row;
      },
    );
  } catch (err) {
    if (err instanceof RolledBack) return err.row;
    throw err;
  }
}

/** Rolls the kiosk's transaction back when the key is not live or the context stale: an answer, not an error. */
class RolledBack extends Error {
  readonly row: RecordedCheckin | undefined;
  constructor(row: RecordedCheckin | undefined) {
    super('rolled back');
    this.row = row;
  }
}

/**
 * The kiosk hot path, without a request transaction: usually ONE statement (attendux_record_checkin: company
 * set inside it, key confirmed live, context fingerprint compared, event inserted) plus the audit entry,
 * judged from a cached context; the context statement first when it must be loaded.
 */
export async function kioskCheck(
  env: KioskEnv,
  k: KioskKey,
  kind: EventKind,
  b: CheckInput,
): Promise<CheckResult> {
  const employeeId = subjectOf(k.caller, b.employeeId).toLowerCase();
  for (let attempt = 0; attempt < KIOSK_ATTEMPTS; attempt++) {
    const { context, v } = await judged(env, k, employeeId, b);
    const vals = eventValues(k.caller, k.client, employeeId, kind, b, v);
    const row = await insertWithAudit(env, k, employeeId, context.version, vals);
    if (!row?.key_live) throw keyNotLive();
    if (row.fresh && row.id !== null && row.occurredAt !== null)
      return checkResult({ id: row.id, occurredAt: row.occurredAt }, employeeId, kind, v);
    // The employee, the sites or the settings changed since the context was loaded: judge again.
    kioskContexts.delete(`${k.caller.tenantId}:${employeeId}`);
  }
  throw conflict('the employee or the company settings keep changing; retry');
}
