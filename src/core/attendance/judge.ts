import { bufferToVector, faceAad, open as openSealed, type DataKeyring } from '../../crypto/aead.js';
import type { CheckinSubject } from '../../db/queries/attendance.js';
import { AttenduxError } from '../../errors.js';
import { mergeSettings } from '../settings/settings.js';
import { conflict, failure, invalid, notFound } from '../service.js';
import { faceMatch, FaceThrottle } from './face.js';
import { judgeGeofence, type GeofenceResult, type Position } from './geofence.js';
import { offlineTime, type OfflineInput } from './offline.js';

/** What a check-in or check-out says (the route's schema has validated the shapes). */
export interface CheckInput extends OfflineInput {
  employeeId?: string;
  position?: Position;
  face?: number[];
  deviceId?: string;
}

export interface Verdict {
  geo: GeofenceResult;
  flagged: boolean;
  method: 'face' | 'gps' | 'kiosk' | 'manual';
  faceScore: number | null;
  /** The device's time of a check queued offline (recorded as occurred_at); absent: the server's now. */
  deviceTime?: Date;
}

/** The data keys; reloaded when a template names a key id the ring does not hold (rotated meanwhile). */
export interface Keys {
  keyring(): Promise<DataKeyring>;
  reloadKeyring(): Promise<DataKeyring>;
}

const faceThrottle = new FaceThrottle();
const throttleKey = (tenantId: string, employeeId: string) => `${tenantId}:${employeeId.toLowerCase()}`;

export const isMismatch = (err: unknown): err is AttenduxError =>
  err instanceof AttenduxError && err.code === 'FACE_MISMATCH';

/** What a face mismatch leaves: a count towards the employee's throttle, an audit entry's details, the refusal. */
export function mismatchRecord(tenantId: string, employeeId: string, err: AttenduxError) {
  const count = faceThrottle.miss(throttleKey(tenantId, employeeId));
  const score = (err.details as { score?: number | null } | undefined)?.score ?? null;
  // The score stays out of the answer (it would guide a search of the template), in the audit entry only.
  return {
    details: { employeeId, score, mismatchesInWindow: count },
    error: failure('FACE_MISMATCH', 'the face does not match'),
  };
}

async function faceScoreOf(
  keys: Keys,
  tenantId: string,
  employeeId: string,
  probe: number[],
  emp: CheckinSubject,
  threshold: number,
): Promise<number> {
  if (!emp.face_template || !emp.face_key_id)
    throw failure('FACE_NOT_ENROLLED', 'no face template is enrolled');
  let ring = await keys.keyring();
  if (!ring.keys[emp.face_key_id]) ring = await keys.reloadKeyring();
  let template: number[];
  try {
    template = bufferToVector(
      openSealed(ring, emp.face_key_id, emp.face_template, faceAad(tenantId, employeeId)),
    );
  } catch (err) {
    // A template that does not open is a server-side problem, never the client's: log it, answer 500.
    throw new AttenduxError('INTERNAL', 'face template cannot be opened', { cause: err });
  }
  if (faceThrottle.blocked(throttleKey(tenantId, employeeId)))
    throw failure('RATE_LIMITED', 'too many face mismatches for this employee; retry later');
  const m = faceMatch(template, probe, threshold);
  if (m.invalidTemplate)
    throw failure('FACE_NOT_ENROLLED', 'the enrolled face template is not a valid vector; enrol it again');
  if (!m.ok) throw failure('FACE_MISMATCH', 'the face does not match', { score: m.score });
  return m.score!;
}

/** Face and geofence verdicts, computed here rather than in SQL; throws when the company's settings refuse. */
export async function judge(
  keys: Keys,
  /** `now`: the server's clock, for checks queued offline; absent on the kiosk path, which takes none. */
  who: { tenantId: string; viaKey: boolean; now?: Date },
  employeeId: string,
  b: CheckInput,
  emp: CheckinSubject | undefined,
): Promise<Verdict> {
  if (!emp) throw notFound('employee');
  if (emp.status !== 'active') throw conflict('the employee is inactive');
  const settings = mergeSettings(emp.settings);
  if ((b.offline || b.deviceTime) && !who.now)
    throw invalid('body.offline', 'not with an API key', 'offline checks are for the web check-in page');
  const deviceTime = who.now ? offlineTime(b, settings, who.now) : undefined;

  let faceScore: number | null = null;
  if (b.face || settings['face.required']) {
    if (!b.face) throw failure('FACE_NOT_ENROLLED', 'this company requires a face vector on every check');
    faceScore = await faceScoreOf(keys, who.tenantId, employeeId, b.face, emp, settings['face.threshold']);
  }

  let geo: GeofenceResult;
  if (settings['geofence.mode'] === 'off') geo = { verdict: 'not_required', siteId: null, distanceM: null };
  else {
    if (!b.position && emp.sites.length && settings['geofence.requirePosition']) {
      throw failure('POSITION_REQUIRED', 'this company requires a GPS position to check in or out');
    }
    geo = judgeGeofence(b.position, emp.sites);
    if (geo.verdict === 'outside' && settings['geofence.mode'] === 'reject') {
      throw failure(
        'OUTSIDE_GEOFENCE',
        `the position is ${Math.round(geo.distanceM ?? 0)} m from the nearest site, outside its radius`,
      );
    }
  }
  const flagged = geo.verdict === 'outside' || geo.verdict === 'unknown';
  const method = faceScore !== null ? 'face' : b.position ? 'gps' : who.viaKey ? 'kiosk' : 'manual';
  return { geo, flagged, method, faceScore, deviceTime };
}
