import type { Subject } from '../../db/queries/dsar.js';

/**
 * README.txt of an export, in plain words (GDPR Art. 15(1): the categories of data, the purposes, how long
 * it is kept, where it came from).
 */
export function exportReadme(
  s: Subject,
  opts: { tenantSlug: string; holdYears: number; generatedAt: Date },
): string {
  return `Your personal data held by ${opts.tenantSlug} in attendux
Generated ${opts.generatedAt.toISOString()} for ${s.fullName} (employee id ${s.employeeId}).

FILES
  data.json              Everything below in one machine-readable file (JSON): your employee record, your
                         login account(s), corrections you asked for, your requests, every attendance event.
  attendance-events.csv  Every check-in and check-out: time, method (GPS, face, kiosk, manual), the position
                         sent with it (latitude, longitude, accuracy) and the geofence verdict (inside,
                         outside, unknown, not required) with the distance to the nearest site.
  timesheets.csv         Worked minutes per day (a check-in paired with the next check-out within 24 hours),
                         split into regular minutes and overtime.
  payroll-lines.csv      Per month: regular and overtime minutes, hourly rate and gross pay in minor units
                         (cents) of ${s.currency}.
  corrections.csv        Corrections of your attendance you or others requested, and the decisions.
  audit-events.csv       The audit log entries about you or done by you. Other staff appear by their role
                         only (for example [hr]), never by name.
  manifest.json          The request id, when this was made, the software and schema version, and the
                         SHA-256 checksum of every file, so you can check that nothing was changed.

CATEGORIES OF DATA
  Identity (name, employee number), contact (email), employment and pay (team, hourly rate, times worked),
  location (the GPS position sent with a check-in), biometric (whether a face template is enrolled and
  when; the template itself is never exported), technical (login times, device ids, audit entries).

PURPOSES
  Recording working time as employment law requires, computing pay, checking that a check-in happened at a
  workplace (the position is used for that check only), securing accounts, and keeping an audit trail.

RETENTION
  Payroll records (times worked, pay) are kept for ${opts.holdYears} year(s) under the company's legal hold;
  the rest is kept while you work for the company. After an erasure request, everything not under the hold
  is deleted or redacted, and the held records stay only under a pseudonymous id.

SOURCES
  You (check-ins from your device or a kiosk, requests), your employer (employee record, pay rate, decisions
  on corrections), and the system (time stamps, geofence verdicts, audit entries).
`;
}
