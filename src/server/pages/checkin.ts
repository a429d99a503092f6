import type { FastifyInstance } from 'fastify';
import { listSites } from '../../core/people/sites.js';
import { loadSettings, type TenantSettings } from '../../core/settings/settings.js';
import { ALL_ROLES } from '../route.js';
import type { ServerDeps } from '../deps.js';
import { html, type Html } from './html.js';
import type { Viewer } from './layout.js';
import { definePage } from './page-route.js';

interface SiteView {
  id: string;
  name: string;
  latitude: number;
  longitude: number;
  radiusM: number;
}

/** What the company does with a check without a position (judge.ts: geofence.mode, geofence.requirePosition). */
export function noPositionPolicy(s: TenantSettings, sites: number): string {
  if (s['geofence.mode'] === 'off' || !sites)
    return 'Your company does not check positions: a check-in without one is recorded as usual.';
  if (s['geofence.requirePosition'])
    return 'Your company requires a position to check in or out: allow this page to use your location, then reload it.';
  return 'Your company records check-ins without a position as flagged, for your manager to review.';
}

/** What the company does with a position outside every site. */
export function outsidePolicy(s: TenantSettings, sites: number): string {
  if (s['geofence.mode'] === 'off' || !sites)
    return 'Your company has no geofence: any position is accepted.';
  if (s['geofence.mode'] === 'reject') return 'Outside every site, your company refuses the check-in.';
  return 'Outside every site, your check-in is recorded and flagged, for your manager to review.';
}

function checkinBody(viewer: Viewer, s: TenantSettings, sites: SiteView[]): Html {
  const hours = s['attendance.offlineMaxHours'];
  const needsPosition = s['geofence.mode'] !== 'off' && sites.length > 0 && s['geofence.requirePosition'];
  return html`<noscript
      ><p class="problem">
        Check-in needs JavaScript, to ask your phone for its position. Turn JavaScript on for this site, or
        ask your manager to record the check for you.
      </p></noscript
    >
    <section
      id="checkin"
      aria-labelledby="where"
      data-sites="${JSON.stringify(sites)}"
      data-time-zone="${viewer.timeZone}"
      data-needs-position="${needsPosition ? 'true' : 'false'}"
      data-queue-key="${`attendux.queue.${viewer.company}.${viewer.email}`}"
    >
      <h2 id="where">Where you are</h2>
      <p id="position" role="status">Finding your position…</p>
      <p id="no-position" class="problem" hidden>${noPositionPolicy(s, sites.length)}</p>
      <div id="buttons" class="buttons" hidden>
        <button type="button" data-kind="check_in">Check in</button>
        <button type="button" data-kind="check_out" class="secondary">Check out</button>
        <button type="button" id="locate" class="secondary">Find my position again</button>
      </div>
      <p id="result" role="status" aria-live="polite"></p>
      <p id="queue" role="status" aria-live="polite"></p>
    </section>
    <h2>What your company's settings do</h2>
    <ul>
      <li>${outsidePolicy(s, sites.length)}</li>
      <li>${noPositionPolicy(s, sites.length)}</li>
      <li>
        Without a network, this page keeps your check on this phone with its time and sends it when you are
        back online. Your company accepts such checks up to ${hours} hours late; older ones need a
        <a href="/corrections/new">correction request</a>.
      </li>
    </ul>`;
}

/** The employee's check-in page: the position from the browser, the nearest site, the check, offline queueing. */
export function checkinPages(app: FastifyInstance, deps: ServerDeps): void {
  definePage(app, deps, {
    method: 'GET',
    url: '/checkin',
    roles: ALL_ROLES,
    async handler({ tx, viewer }) {
      if (!tx.caller.employeeId)
        return {
          title: 'Check in',
          body: html`<p>
            Your user is not linked to an employee, so there is nobody to check in. An administrator can link
            it under Users.
          </p>`,
        };
      const settings = await loadSettings(tx.q, tx.caller.tenantId);
      const sites = (await listSites(tx)).map((r) => ({
        id: r.id as string,
        name: r.name as string,
        latitude: r.latitude as number,
        longitude: r.longitude as number,
        radiusM: r.radiusM as number,
      }));
      return { title: 'Check in', scripts: ['checkin.js'], body: checkinBody(viewer, settings, sites) };
    },
  });
}
