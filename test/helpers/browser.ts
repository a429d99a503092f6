import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { AxeBuilder } from '@axe-core/playwright';
import { expect } from 'vitest';
import { serverFixture, type ServerFixture } from './server.js';

/** Debian's Chromium (.ci/run installs it); no browser is ever downloaded. */
export const CHROMIUM = '/usr/bin/chromium';
export const haveChromium = existsSync(CHROMIUM);

/** Where screenshots go: test artifacts, never committed (.tmp is ignored). */
export const SCREENSHOTS = join(process.cwd(), '.tmp', 'screenshots');

export const PHONE = { width: 360, height: 740 };
export const DESKTOP = { width: 1280, height: 800 };

/**
 * Headless Chromium as root in CI: --no-sandbox; and none of its background connections, which this closed
 * network refuses (update checks, sync, QUIC).
 */
export function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** What a page did that the checks look at: CSP violations, and every response with its size and origin. */
export interface Watch {
  cspViolations: string[];
  responses: { url: string; bytes: number; type: string }[];
  /** Forget what was seen so far (before navigating to the page under check). */
  reset(): void;
}

export function watch(page: Page): Watch {
  const w: Watch = {
    cspViolations: [],
    responses: [],
    reset() {
      w.cspViolations.length = 0;
      w.responses.length = 0;
    },
  };
  page.on('console', (m) => {
    if (/Content Security Policy|Content-Security-Policy/i.test(m.text())) w.cspViolations.push(m.text());
  });
  page.on('response', (r) => {
    void r
      .body()
      .then((b) => w.responses.push({ url: r.url(), bytes: b.length, type: r.request().resourceType() }))
      .catch(() => w.responses.push({ url: r.url(), bytes: 0, type: r.request().resourceType() })); // redirects have no body
  });
  return w;
}

/** A fresh context (own cookies) at a viewport, with geolocation granted or not, and its watcher. */
export async function openPage(
  browser: Browser,
  baseURL: string,
  opts: {
    viewport?: { width: number; height: number };
    geolocation?: { latitude: number; longitude: number };
  } = {},
): Promise<{ context: BrowserContext; page: Page; seen: Watch }> {
  const context = await browser.newContext({
    baseURL,
    viewport: opts.viewport ?? PHONE,
    ...(opts.geolocation ? { geolocation: opts.geolocation, permissions: ['geolocation'] } : {}),
  });
  const page = await context.newPage();
  return { context, page, seen: watch(page) };
}

/**
 * The checks every page must pass: a CSP header, no CSP violation in the console, no serious or critical axe
 * finding, HTML + CSS + JS under 100 KB, nothing from another origin; then screenshots at phone and desktop width.
 */
export async function checkPage(page: Page, seen: Watch, name: string): Promise<void> {
  const origin = new URL(page.url()).origin;
  await page.waitForLoadState('networkidle');
  const doc = await page.request.get(page.url(), { maxRedirects: 0 });
  expect(doc.headers()['content-security-policy'], `${name}: CSP header`).toMatch(/default-src 'none'/);
  expect(seen.cspViolations, `${name}: CSP violations`).toEqual([]);
  const foreign = seen.responses.filter((r) => !r.url.startsWith(origin) && !r.url.startsWith('data:'));
  expect(
    foreign.map((r) => r.url),
    `${name}: requests to other origins`,
  ).toEqual([]);
  const weight = seen.responses
    .filter((r) => ['document', 'stylesheet', 'script'].includes(r.type))
    .reduce((n, r) => n + r.bytes, 0);
  expect(weight, `${name}: HTML + CSS + JS bytes`).toBeLessThan(100 * 1024);
  const axe = await new AxeBuilder({ page }).analyze();
  const bad = axe.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  expect(
    bad.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join(', ')})`),
    `${name}: axe serious/critical`,
  ).toEqual([]);
  await mkdir(SCREENSHOTS, { recursive: true });
  const size = page.viewportSize();
  for (const [label, vp] of [
    ['phone', PHONE],
    ['desktop', DESKTOP],
  ] as const) {
    await page.setViewportSize(vp);
    await page.screenshot({ path: join(SCREENSHOTS, `${name}-${label}.png`), fullPage: true });
  }
  if (size) await page.setViewportSize(size);
}

/** Sign in through the page (no JavaScript needed) and land on the role's home. */
export async function signIn(page: Page, company: string, email: string, password: string): Promise<void> {
  await page.goto('/login');
  await page.getByLabel('Company').fill(company);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.waitForLoadState('load');
}

/** A server fixture (own database, company `acme`) listening on a loopback port, and a browser. */
export async function pagesFixture(
  label: string,
  opts: Parameters<typeof serverFixture>[1] = {},
): Promise<{ fx: ServerFixture; baseURL: string; browser: Browser; close(): Promise<void> }> {
  const fx = await serverFixture(label, opts);
  await fx.app.listen({ host: '127.0.0.1', port: 0 });
  const addr = fx.app.server.address();
  if (!addr || typeof addr === 'string') throw new Error('the test server did not listen on a port');
  const browser = await launchBrowser();
  return {
    fx,
    baseURL: `http://127.0.0.1:${addr.port}`,
    browser,
    close: async () => {
      await browser.close();
      await fx.close();
    },
  };
}
