import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Archiver } from 'archiver';
import { stringify } from 'csv-stringify';
import type { Queryable } from '../../db/pool.js';
import {
  EVENT_COLUMNS,
  eventPage,
  subjectAuditPage,
  subjectCorrections,
  subjectRequests,
  subjectUsers,
  timesheetPage,
  userRoles,
  type Subject,
} from '../../db/queries/dsar.js';
import { payrollForDays, splitOvertime, type OvertimeRule } from '../reports/payroll.js';

/**
 * One subject's files, streamed into an archiver instance: `dsar export` writes them at the root of its zip,
 * `tenant export` once per person under a prefix. Every file is produced by a lazy generator reading the
 * database in pages, so memory stays constant whatever the number of events. archiver pipes every source
 * into a PassThrough at once, so the generators run side by side, each held back by backpressure: their
 * queries interleave on `db`, one at a time (serialized). Run them inside one REPEATABLE READ transaction for a
 * consistent export.
 */

export interface FileDigest {
  name: string;
  sha256: string;
  bytes: number;
}

export interface SubjectFileOptions {
  /** Path prefix inside the archive ('' or 'people/<id>/'). */
  prefix?: string;
  overtime: OvertimeRule;
  /** Rows per query page. */
  pageSize?: number;
}

export interface SubjectFiles {
  /** Resolves with every file's digest once archiver has consumed the last one. */
  done: Promise<FileDigest[]>;
  names: string[];
}

const PAGE = 5000;

type Chunks = AsyncGenerator<string | Buffer, void, undefined>;

/**
 * Append the subject's data files (data.json and the CSVs) to `archive`. Until `done`, send nothing on `db`
 * yourself except through another appendSubjectFiles call (they share one queue per client).
 */
export function appendSubjectFiles(
  archive: Archiver,
  db: Queryable,
  subject: Subject,
  opts: SubjectFileOptions,
): SubjectFiles {
  const q = serialized(db);
  const prefix = opts.prefix ?? '';
  const page = opts.pageSize ?? PAGE;
  const digests: FileDigest[] = [];
  const files = subjectFileList(q, subject, page, opts.overtime);
  let finish!: (d: FileDigest[]) => void;
  let fail!: (err: unknown) => void;
  const done = new Promise<FileDigest[]>((res, rej) => {
    finish = res;
    fail = rej;
  });
  for (const [name, make] of files) {
    const gen = hashed(prefix + name, make, digests);
    const src = Readable.from(
      (async function* () {
        try {
          yield* gen;
          if (digests.length === files.length) finish(digests);
        } catch (err) {
          fail(err);
          throw err;
        }
      })(),
    );
    // archiver pipes sources without forwarding their errors: a failed query would leave it waiting forever.
    src.on('error', (err) => archive.emit('error', err));
    archive.append(src, { name: prefix + name });
  }
  // An unobserved rejection must not crash the process: the archive's own error reports it.
  done.catch(() => undefined);
  return { done, names: files.map(([n]) => prefix + n) };
}

/** The files of one subject: name, and the generator that produces its content. */
function subjectFileList(
  q: Queryable,
  subject: Subject,
  page: number,
  overtime: OvertimeRule,
): [string, () => Chunks][] {
  const { tenantId, employeeId } = subject;
  return [
    ['data.json', () => dataJson(q, subject, page)],
    [
      'attendance-events.csv',
      () =>
        csv(
          EVENT_COLUMNS as unknown as string[],
          pages(
            (after) => eventPage(q, tenantId, employeeId, after, page),
            '0',
            (r) => String(r.id),
          ),
        ),
    ],
    [
      'timesheets.csv',
      () =>
        csv(
          ['day', 'worked_minutes', 'regular_minutes', 'overtime_minutes'],
          timesheetRows(q, subject, page, overtime),
        ),
    ],
    ['payroll-lines.csv', () => csv(PAYROLL_COLUMNS, payrollRows(q, subject, page, overtime))],
    [
      'corrections.csv',
      () =>
        csv(
          CORRECTION_COLUMNS,
          once(() => subjectCorrections(q, tenantId, employeeId)),
        ),
    ],
    [
      'audit-events.csv',
      () =>
        csv(
          ['seq', 'at', 'actor', 'action', 'entity_type', 'entity_id', 'details'],
          auditRows(q, subject, page),
        ),
    ],
  ];
}

/**
 * The generators run side by side; a pg client must be sent one query at a time (pg 9 will refuse a query
 * while another runs): chain them.
 */
const chains = new WeakMap<Queryable, Queryable>();
function serialized(q: Queryable): Queryable {
  // One chain per client, so that several subjects appended to one archive (tenant export) share it too.
  let wrapped = chains.get(q);
  if (wrapped) return wrapped;
  let tail: Promise<unknown> = Promise.resolve();
  const query = (...args: Parameters<Queryable['query']>) => {
    const run = tail.then(() => (q.query as (...a: unknown[]) => Promise<unknown>)(...args));
    // the tail only orders queries; each error reaches its caller through `run`
    tail = run.catch(() => undefined);
    return run;
  };
  wrapped = { query: query as Queryable['query'] };
  chains.set(q, wrapped);
  return wrapped;
}

/** A lazy stream of text that hashes itself as archiver reads it; resolves with its digest once read. */
export function appendText(
  archive: Archiver,
  name: string,
  make: () => Promise<string>,
): Promise<FileDigest> {
  const digests: FileDigest[] = [];
  let done!: (d: FileDigest) => void;
  const read = new Promise<FileDigest>((res) => (done = res));
  const src = Readable.from(
    (async function* () {
      yield* hashed(
        name,
        async function* () {
          yield await make();
        },
        digests,
      );
      done(digests[0]!);
    })(),
  );
  src.on('error', (err) => archive.emit('error', err));
  archive.append(src, { name });
  return read;
}

async function* hashed(name: string, make: () => Chunks, digests: FileDigest[]): Chunks {
  const h = createHash('sha256');
  let bytes = 0;
  for await (const chunk of make()) {
    const b = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    h.update(b);
    bytes += b.length;
    yield b;
  }
  digests.push({ name, sha256: h.digest('hex'), bytes });
}

async function* pages<T>(fetch: (after: string) => Promise<T[]>, start: string, key: (r: T) => string) {
  let after = start;
  for (;;) {
    const rows = await fetch(after);
    for (const r of rows) yield r;
    if (!rows.length) return;
    after = key(rows[rows.length - 1]!);
  }
}

async function* once<T>(fetch: () => Promise<T[]>) {
  yield* await fetch();
}

async function* csv(columns: string[], rows: AsyncIterable<object>): Chunks {
  const out = Readable.from(rows).pipe(
    stringify({
      header: true,
      columns,
      cast: { boolean: (v) => String(v), object: (v) => JSON.stringify(v) },
      // A cell starting with = + - @ is a formula to a spreadsheet: quote it with a leading apostrophe.
      escape_formulas: true,
    }),
  );
  for await (const chunk of out) yield chunk as Buffer;
}

const PAYROLL_COLUMNS = [
  'month',
  'regular_minutes',
  'overtime_minutes',
  'hourly_rate_minor',
  'overtime_multiplier_percent',
  'gross_pay_minor',
  'currency',
];
const CORRECTION_COLUMNS = [
  'id',
  'action',
  'event_id',
  'proposed_kind',
  'proposed_occurred_at',
  'reason',
  'status',
  'requested_by',
  'decided_by',
  'decided_at',
  'decision_note',
  'created_at',
];

function days(q: Queryable, s: Subject, page: number) {
  return pages(
    (after) => timesheetPage(q, s.tenantId, s.employeeId, after, page),
    '0001-01-01',
    (r) => r.day,
  );
}

async function* timesheetRows(q: Queryable, s: Subject, page: number, rule: OvertimeRule) {
  for await (const d of days(q, s, page)) {
    const o = splitOvertime(d.workedMinutes, rule);
    yield {
      day: d.day,
      worked_minutes: d.workedMinutes,
      regular_minutes: o.regularMinutes,
      overtime_minutes: o.overtimeMinutes,
    };
  }
}

/** One payroll line per calendar month, computed as the payroll export does (overtime per day). */
async function* payrollRows(q: Queryable, s: Subject, page: number, rule: OvertimeRule) {
  let month = '';
  let list: { day: string; workedMinutes: number }[] = [];
  const line = () => {
    const pay = payrollForDays(list, s.hourlyRateMinor, rule);
    return {
      month,
      regular_minutes: pay.regularMinutes,
      overtime_minutes: pay.overtimeMinutes,
      hourly_rate_minor: s.hourlyRateMinor,
      overtime_multiplier_percent: rule.multiplierPercent,
      gross_pay_minor: pay.grossPayMinor,
      currency: s.currency,
    };
  };
  for await (const d of days(q, s, page)) {
    const m = d.day.slice(0, 7);
    if (m !== month && list.length) {
      yield line();
      list = [];
    }
    month = m;
    list.push(d);
  }
  if (list.length) yield line();
}

/** Ids that name the subject in the audit log: the employee and its users. */
async function subjectIds(q: Queryable, s: Subject): Promise<string[]> {
  return [s.employeeId, ...(await subjectUsers(q, s.tenantId, s.employeeId)).map((u) => u.id)];
}

/**
 * The audit entries about the person. Other staff appear by role only: `user:<id>` actors and any user id
 * in the details become `[role]`.
 */
async function* auditRows(q: Queryable, s: Subject, page: number) {
  const ids = await subjectIds(q, s);
  const roles = await userRoles(q, s.tenantId);
  const mine = new Set(ids);
  const staff = (text: string) =>
    text.replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi, (id) =>
      mine.has(id) || !roles.has(id) ? id : `[${roles.get(id)}]`,
    );
  const actor = (a: string) => {
    const id = a.startsWith('user:') ? a.slice(5) : null;
    if (id && mine.has(id)) return 'the employee';
    if (id) return `[${roles.get(id) ?? 'former user'}]`;
    if (a.startsWith('cli:')) return '[staff, command line]';
    if (a.startsWith('apikey:')) return '[integration]';
    return a;
  };
  const rows = pages(
    (after) => subjectAuditPage(q, s.tenantId, ids, Number(after), page),
    '0',
    (r) => String(r.seq),
  );
  for await (const r of rows) {
    yield {
      seq: r.seq,
      at: r.at,
      actor: actor(r.actor),
      action: r.action,
      entity_type: r.entityType,
      entity_id: r.entityId && !mine.has(r.entityId) ? staff(r.entityId) : r.entityId,
      details: staff(JSON.stringify(r.details)),
    };
  }
}

/** data.json: everything about the person, machine-readable; the events streamed into it page by page. */
async function* dataJson(q: Queryable, s: Subject, page: number): Chunks {
  const users = (await subjectUsers(q, s.tenantId, s.employeeId)).map((u) => ({
    id: u.id,
    email: u.email,
    displayName: u.displayName,
    role: u.role,
    disabledAt: u.disabledAt,
    lastLoginAt: u.lastLoginAt,
    createdAt: u.createdAt,
  }));
  const { faceTemplate, faceEnrolledAt, ...employee } = s;
  const head = {
    employee,
    // Never the template itself: only that one exists and when it was enrolled.
    biometrics: { faceTemplateExists: faceTemplate, faceEnrolledAt },
    users,
    corrections: await subjectCorrections(q, s.tenantId, s.employeeId),
    requests: await subjectRequests(q, s.tenantId, s.employeeId),
  };
  const text = JSON.stringify(head, null, 2);
  yield text.slice(0, -2) + ',\n  "attendanceEvents": [';
  let first = true;
  for await (const e of pages(
    (after) => eventPage(q, s.tenantId, s.employeeId, after, page),
    '0',
    (r) => String(r.id),
  )) {
    yield (first ? '\n    ' : ',\n    ') + JSON.stringify(e);
    first = false;
  }
  yield first ? ']\n}\n' : '\n  ]\n}\n';
}
