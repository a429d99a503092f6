import type { FastifyInstance } from 'fastify';
import formbody from '@fastify/formbody';
import fastifyStatic from '@fastify/static';
import { fileURLToPath } from 'node:url';
import type { ServerDeps } from '../deps.js';
import { errorPage } from './page-route.js';
import { sessionPages } from './session.js';
import { checkinPages } from './checkin.js';
import { accountPages } from './account.js';
import { myWeekPages } from './my-week.js';
import { correctionRequestPages } from './correction-request.js';
import { managePages } from './manage.js';
import { adminPeoplePages } from './admin-people.js';
import { adminAccessPages } from './admin-access.js';

/** The stylesheet and scripts of the pages (web/assets in the package; same origin, so the CSP allows them). */
export const ASSETS_DIR = fileURLToPath(new URL('../../../web/assets', import.meta.url));

/**
 * The web pages, in their own plugin scope: only here are form posts (x-www-form-urlencoded) parsed, so the JSON
 * API keeps refusing anything but JSON; and errors render as a page in plain words instead of a JSON body.
 */
export async function registerPages(
  app: FastifyInstance,
  deps: ServerDeps,
  loginRateLimit: { max: number; timeWindow: number },
): Promise<void> {
  await app.register(fastifyStatic, {
    root: ASSETS_DIR,
    prefix: '/assets/',
    maxAge: '5m',
    // No directory listings, no dotfiles; only what is in web/assets.
    index: false,
    dotfiles: 'deny',
  });
  await app.register(async (pages) => {
    await pages.register(formbody, { bodyLimit: 16 * 1024 });
    pages.setErrorHandler((err, req, reply) => errorPage(err, req, reply));
    sessionPages(pages, deps, loginRateLimit);
    checkinPages(pages, deps);
    accountPages(pages, deps);
    myWeekPages(pages, deps);
    correctionRequestPages(pages, deps);
    managePages(pages, deps);
    adminPeoplePages(pages, deps);
    adminAccessPages(pages, deps);
  });
}
