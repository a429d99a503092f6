import type { Role } from '../../core/accounts/roles.js';
import { html, type Html } from './html.js';

/** Who is signed in, as the navigation shows it. */
export interface Viewer {
  email: string;
  displayName: string;
  role: Role;
  company: string;
  /** The company's time zone (IANA), in which pages show times and days. */
  timeZone: string;
}

export interface LayoutInput {
  title: string;
  /** The per-response CSP nonce (absent on error pages answered before helmet ran). */
  nonce?: { script: string; style: string };
  viewer?: Viewer;
  body: Html;
  /** Scripts under /assets/ (same origin, also carrying the nonce); pages work without them where they can. */
  scripts?: readonly string[];
}

interface NavItem {
  href: string;
  label: string;
  roles: readonly Role[];
}

const EVERYONE: readonly Role[] = ['owner', 'admin', 'manager', 'hr', 'employee'];
const MANAGERS: readonly Role[] = ['owner', 'admin', 'manager', 'hr'];
const ADMINS: readonly Role[] = ['owner', 'admin'];

/** The navigation: each page module owns its URLs; this is the one list of what each role is offered. */
export const NAV: readonly NavItem[] = [
  { href: '/checkin', label: 'Check in', roles: ['employee', 'manager', 'hr', 'admin', 'owner'] },
  { href: '/timesheet', label: 'My week', roles: EVERYONE },
  { href: '/corrections/new', label: 'Request a correction', roles: EVERYONE },
  { href: '/board', label: "Today's board", roles: MANAGERS },
  { href: '/corrections', label: 'Corrections', roles: MANAGERS },
  { href: '/timesheets', label: 'Timesheets', roles: MANAGERS },
  { href: '/admin/employees', label: 'Employees', roles: ADMINS },
  { href: '/admin/sites', label: 'Sites', roles: ADMINS },
  { href: '/admin/users', label: 'Users', roles: ADMINS },
  { href: '/admin/api-keys', label: 'API keys', roles: ADMINS },
  { href: '/admin/settings', label: 'Settings', roles: ADMINS },
  { href: '/admin/audit', label: 'Audit log', roles: ADMINS },
  { href: '/account', label: 'My account', roles: EVERYONE },
];

/** Where a role lands after signing in. */
export function homeOf(role: Role): string {
  return role === 'employee'
    ? '/checkin'
    : role === 'owner' || role === 'admin'
      ? '/admin/employees'
      : '/board';
}

function nav(viewer: Viewer): Html {
  const items = NAV.filter((i) => i.roles.includes(viewer.role));
  return html`<nav aria-label="Main">
    <ul>
      ${items.map((i) => html`<li><a href="${i.href}">${i.label}</a></li>`)}
    </ul>
    <form method="post" action="/logout"><button type="submit">Sign out</button></form>
    <p class="who">${viewer.displayName || viewer.email} · ${viewer.role} · ${viewer.company}</p>
  </nav>`;
}

/** The page shell: one stylesheet and the page's scripts from this origin, a main landmark, the navigation. */
export function layout(p: LayoutInput): string {
  const nonce = p.nonce;
  return html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>${p.title} · attendux</title>
        <link rel="stylesheet" href="/assets/app.css" ${nonce ? html` nonce="${nonce.style}"` : ''} />
        ${(p.scripts ?? []).map((s) => html`<script src="/assets/${s}" defer${nonce ? html` nonce="${nonce.script}"` : ''}></script>`)}
      </head>
      <body>
        <header><a class="brand" href="/">attendux</a>${p.viewer ? nav(p.viewer) : ''}</header>
        <main id="main">
          <h1>${p.title}</h1>
          ${p.body}
        </main>
      </body>
    </html> `.value;
}
