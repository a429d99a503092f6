import type { Queryable } from '../pool.js';
import { employeeScope, type Viewer } from './scope.js';

/** An untyped result row, for queries whose rows go straight into a JSON response. */
export type Row = Record<string, unknown>;

/** Never the face template: only whether one is enrolled. */
const EMPLOYEE_COLUMNS = `e.id, e.employee_number AS "employeeNumber", e.full_name AS "fullName", e.email,
  e.team_id AS "teamId", e.hourly_rate_minor AS "hourlyRateMinor", e.currency, e.time_zone AS "timeZone",
  e.status, e.face_template IS NOT NULL AS "faceEnrolled", e.face_enrolled_at AS "faceEnrolledAt",
  e.created_at AS "createdAt", e.updated_at AS "updatedAt"`;

export interface EmployeeFields {
  fullName?: string;
  employeeNumber?: string;
  email?: string;
  teamId?: string | null;
  hourlyRateMinor?: number;
  currency?: string;
  timeZone?: string;
  status?: 'active' | 'inactive';
}

export async function employeeExists(q: Queryable, tenantId: string, id: string): Promise<boolean> {
  const r = await q.query('SELECT 1 FROM employees WHERE tenant_id = $1 AND id = $2', [tenantId, id]);
  return Boolean(r.rowCount);
}

export async function listEmployees(
  q: Queryable,
  v: Viewer,
  f: { teamId?: string; status?: string; limit: number; offset: number },
): Promise<Row[]> {
  const s = employeeScope(v, 'e', 6);
  const { rows } = await q.query<Row>(
    `SELECT ${EMPLOYEE_COLUMNS} FROM employees e
      WHERE e.tenant_id = $1 AND ($2::uuid IS NULL OR e.team_id = $2) AND ($3::text IS NULL OR e.status = $3)
        AND ${s.sql}
      ORDER BY e.full_name, e.id LIMIT $4 OFFSET $5`,
    [v.tenantId, f.teamId ?? null, f.status ?? null, f.limit, f.offset, ...s.params],
  );
  return rows;
}

export async function getEmployee(q: Queryable, v: Viewer, id: string): Promise<Row | undefined> {
  const s = employeeScope(v, 'e', 3);
  const { rows } = await q.query<Row>(
    `SELECT ${EMPLOYEE_COLUMNS} FROM employees e WHERE e.tenant_id = $1 AND e.id = $2 AND ${s.sql}`,
    [v.tenantId, id, ...s.params],
  );
  return rows[0];
}

/** Currency and time zone default to the company's. */
export async function insertEmployee(
  q: Queryable,
  tenantId: string,
  b: EmployeeFields & { fullName: string },
): Promise<Row & { id: string }> {
  const { rows } = await q.query<Row & { id: string }>(
    `INSERT INTO employees AS e (tenant_id, full_name, employee_number, email, team_id, hourly_rate_minor, currency, time_zone)
     VALUES ($1, $2, $3, $4, $5, coalesce($6, 0), coalesce($7, (SELECT currency FROM tenants WHERE id = $1)),
             coalesce($8, (SELECT time_zone FROM tenants WHERE id = $1)))
     RETURNING ${EMPLOYEE_COLUMNS}`,
    [
      tenantId,
      b.fullName,
      b.employeeNumber ?? null,
      b.email ?? null,
      b.teamId ?? null,
      b.hourlyRateMinor ?? null,
      b.currency ?? null,
      b.timeZone ?? null,
    ],
  );
  return rows[0]!;
}

/** Fields left undefined are unchanged; employeeNumber, email and teamId may be cleared with null. */
export async function updateEmployee(
  q: Queryable,
  tenantId: string,
  id: string,
  b: EmployeeFields,
): Promise<Row | undefined> {
  const { rows } = await q.query<Row>(
    `UPDATE employees e SET
        full_name = coalesce($3, full_name),
        employee_number = CASE WHEN $4::boolean THEN $5 ELSE employee_number END,
        email = CASE WHEN $6::boolean THEN $7 ELSE email END,
        team_id = CASE WHEN $8::boolean THEN $9::uuid ELSE team_id END,
        hourly_rate_minor = coalesce($10, hourly_rate_minor),
        currency = coalesce($11, currency),
        time_zone = coalesce($12, time_zone),
        status = coalesce($13, status),
        updated_at = now()
      WHERE tenant_id = $1 AND id = $2
      RETURNING ${EMPLOYEE_COLUMNS}`,
    [
      tenantId,
      id,
      b.fullName ?? null,
      b.employeeNumber !== undefined,
      b.employeeNumber ?? null,
      b.email !== undefined,
      b.email ?? null,
      b.teamId !== undefined,
      b.teamId ?? null,
      b.hourlyRateMinor ?? null,
      b.currency ?? null,
      b.timeZone ?? null,
      b.status ?? null,
    ],
  );
  return rows[0];
}

/** Store a sealed face template, or remove it (sealed null); false when there is no such employee. */
export async function setFaceTemplate(
  q: Queryable,
  tenantId: string,
  id: string,
  sealed: { data: Buffer; keyId: string } | null,
): Promise<boolean> {
  const { rowCount } = await q.query(
    `UPDATE employees SET face_template = $3, face_key_id = $4,
            face_enrolled_at = CASE WHEN $3::bytea IS NULL THEN NULL ELSE now() END, updated_at = now()
      WHERE tenant_id = $1 AND id = $2`,
    [tenantId, id, sealed?.data ?? null, sealed?.keyId ?? null],
  );
  return Boolean(rowCount);
}

// ---- Teams ----

const TEAM_COLUMNS = `id, name, created_at AS "createdAt"`;

export async function teamExists(q: Queryable, tenantId: string, id: string): Promise<boolean> {
  const r = await q.query('SELECT 1 FROM teams WHERE tenant_id = $1 AND id = $2', [tenantId, id]);
  return Boolean(r.rowCount);
}

/** Every team with its managers; a manager sees only the teams they manage. */
export async function listTeams(q: Queryable, v: Viewer): Promise<Row[]> {
  const { rows } = await q.query<Row>(
    `SELECT t.id, t.name, t.created_at AS "createdAt",
            coalesce((SELECT json_agg(tm.user_id ORDER BY tm.user_id) FROM team_managers tm
                       WHERE tm.tenant_id = t.tenant_id AND tm.team_id = t.id), '[]') AS "managerIds"
       FROM teams t
      WHERE t.tenant_id = $1
        AND ($2::text IS DISTINCT FROM 'manager'
             OR t.id IN (SELECT team_id FROM team_managers WHERE tenant_id = $1 AND user_id = $3::uuid))
      ORDER BY t.name`,
    [v.tenantId, v.role, v.userId],
  );
  return rows;
}

export async function insertTeam(
  q: Queryable,
  tenantId: string,
  name: string,
): Promise<Row & { id: string }> {
  const { rows } = await q.query<Row & { id: string }>(
    `INSERT INTO teams (tenant_id, name) VALUES ($1, $2) RETURNING ${TEAM_COLUMNS}`,
    [tenantId, name],
  );
  return rows[0]!;
}

export async function renameTeam(
  q: Queryable,
  tenantId: string,
  id: string,
  name: string,
): Promise<Row | undefined> {
  const { rows } = await q.query<Row>(
    `UPDATE teams SET name = $3 WHERE tenant_id = $1 AND id = $2 RETURNING ${TEAM_COLUMNS}`,
    [tenantId, id, name],
  );
  return rows[0];
}

export async function addTeamManager(q: Queryable, tenantId: string, teamId: string, userId: string) {
  await q.query(
    'INSERT INTO team_managers (tenant_id, team_id, user_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING',
    [tenantId, teamId, userId],
  );
}

export async function removeTeamManager(q: Queryable, tenantId: string, teamId: string, userId: string) {
  await q.query('DELETE FROM team_managers WHERE tenant_id = $1 AND team_id = $2 AND user_id = $3', [
    tenantId,
    teamId,
    userId,
  ]);
}

// ---- Sites ----

const SITE_COLUMNS = `id, name, latitude, longitude, radius_m AS "radiusM", created_at AS "createdAt"`;

export interface SiteFields {
  name: string;
  latitude: number;
  longitude: number;
  radiusM: number;
}

export async function listSites(q: Queryable, tenantId: string): Promise<Row[]> {
  const { rows } = await q.query<Row>(
    `SELECT ${SITE_COLUMNS} FROM sites WHERE tenant_id = $1 ORDER BY name`,
    [tenantId],
  );
  return rows;
}

export async function insertSite(
  q: Queryable,
  tenantId: string,
  b: SiteFields,
): Promise<Row & { id: string }> {
  const { rows } = await q.query<Row & { id: string }>(
    `INSERT INTO sites (tenant_id, name, latitude, longitude, radius_m) VALUES ($1, $2, $3, $4, $5)
     RETURNING ${SITE_COLUMNS}`,
    [tenantId, b.name, b.latitude, b.longitude, b.radiusM],
  );
  return rows[0]!;
}

export async function updateSite(
  q: Queryable,
  tenantId: string,
  id: string,
  b: Partial<SiteFields>,
): Promise<Row | undefined> {
  const { rows } = await q.query<Row>(
    `UPDATE sites SET name = coalesce($3, name), latitude = coalesce($4, latitude),
            longitude = coalesce($5, longitude), radius_m = coalesce($6, radius_m)
      WHERE tenant_id = $1 AND id = $2 RETURNING ${SITE_COLUMNS}`,
    [tenantId, id, b.name ?? null, b.latitude ?? null, b.longitude ?? null, b.radiusM ?? null],
  );
  return rows[0];
}

/** undefined: no such site; else whether attendance events reference it. */
export async function siteInUse(q: Queryable, tenantId: string, id: string): Promise<boolean | undefined> {
  const { rows } = await q.query<{ used: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM attendance_events a WHERE a.tenant_id = $1 AND a.site_id = $2) AS used
       FROM sites WHERE tenant_id = $1 AND id = $2`,
    [tenantId, id],
  );
  return rows[0]?.used;
}

export async function deleteSite(q: Queryable, tenantId: string, id: string): Promise<boolean> {
  const { rowCount } = await q.query('DELETE FROM sites WHERE tenant_id = $1 AND id = $2', [tenantId, id]);
  return Boolean(rowCount);
}
