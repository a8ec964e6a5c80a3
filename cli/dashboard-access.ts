/**
 * Who may do what on `cascade dashboard`. bull-board has retry, clean, delete, pause and
 * obliterate buttons and no authentication of its own, so this express middleware stands in
 * front of it: without `--allow-writes` every request that is not GET/HEAD is refused, whatever
 * bull-board's own read-only flag covers; with a token in the environment every request needs
 * it (a bearer token, or basic auth whose password is the token), so a browser asks once and
 * then sends it with the page's API calls. Off loopback, job data (image keys, run outputs, error
 * messages) would reach anyone who can connect, so a token is required there unless the operator
 * says `--allow-anonymous` (a port published on loopback only, or a proxy that authenticates).
 */
import { timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import type { NextFunction, Request, Response } from 'express';
import { CascadeError } from '../config/errors.js';

/** The environment variable holding the dashboard token. */
export const DASHBOARD_TOKEN_ENV = 'CASCADE_DASHBOARD_TOKEN';

export interface DashboardAccess {
  /** Allow bull-board's actions (retry, clean, delete, pause, …). */
  allowWrites: boolean;
  /** Required on every request when set; required to allow writes. */
  token?: string;
  /** Serve without a token on a non-loopback interface (someone else restricts who can connect). */
  allowAnonymous?: boolean;
}

/** Whether `host` is this machine only: localhost, 127.0.0.0/8, ::1 (also IPv4-mapped). */
export function isLoopbackHost(host: string): boolean {
  const h = host
    .trim()
    .toLowerCase()
    .replace(/^\[(.*)\]$/, '$1');
  if (h === 'localhost') return true;
  const v4 = h.startsWith('::ffff:') && isIP(h.slice(7)) === 4 ? h.slice(7) : h;
  if (isIP(v4) === 4) return v4.startsWith('127.');
  return isIP(h) === 6 && /^(0{0,4}:){2,7}0{0,3}1$|^::1$/.test(h);
}

/** Refuse (exit 2) to serve without a token on an interface other hosts can reach, unless allowed anonymous. */
export function checkDashboardHost(host: string, access: DashboardAccess): void {
  if (isLoopbackHost(host) || access.token !== undefined || access.allowAnonymous) return;
  throw new CascadeError(
    `cascade dashboard --host ${host} would serve job data to anyone who can connect: set ${DASHBOARD_TOKEN_ENV} (16+ characters), or pass --allow-anonymous when a proxy or a loopback-only port restricts access`,
  );
}

/** The access settings from the flags and the environment; writes without a token are a configuration error. */
export function dashboardAccess(allowWrites: boolean, env: NodeJS.ProcessEnv = process.env, allowAnonymous = false): DashboardAccess {
  const token = env[DASHBOARD_TOKEN_ENV] || undefined;
  if (allowWrites && !token)
    throw new CascadeError(`cascade dashboard --allow-writes needs a token: set ${DASHBOARD_TOKEN_ENV} (sent as a bearer token or as the basic-auth password)`);
  if (token !== undefined && token.length < 16) throw new CascadeError(`${DASHBOARD_TOKEN_ENV} is too short: use at least 16 characters`);
  return { allowWrites, token, ...(allowAnonymous ? { allowAnonymous } : {}) };
}

/** The token a request presents: `Authorization: Bearer <t>` or `Basic base64(<any user>:<t>)`. */
export function presentedToken(authorization: string | undefined): string | undefined {
  const m = /^(Bearer|Basic)\s+(\S+)$/i.exec(authorization?.trim() ?? '');
  if (!m) return undefined;
  if (m[1]!.toLowerCase() === 'bearer') return m[2];
  const decoded = Buffer.from(m[2]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon >= 0 ? decoded.slice(colon + 1) : undefined;
}

/** Constant-time comparison, so response times do not reveal how much of a guess was right. */
function sameToken(given: string | undefined, token: string): boolean {
  if (given === undefined) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The host:port of an Origin header; undefined for `null` or a malformed one. */
function originHost(origin: string): string | undefined {
  try {
    return new URL(origin).host;
  } catch {
    return undefined;
  }
}

/** express middleware enforcing `access` in front of bull-board. */
export function dashboardGuard(access: DashboardAccess) {
  return (req: Request, res: Response, next: NextFunction): void => {
    if (access.token !== undefined && !sameToken(presentedToken(req.headers.authorization), access.token)) {
      res.status(401).set('WWW-Authenticate', 'Basic realm="cascade dashboard", charset="UTF-8"').type('text/plain').send('token required\n');
      return;
    }
    if (req.method === 'GET' || req.method === 'HEAD') {
      next();
      return;
    }
    if (!access.allowWrites) {
      res.status(403).type('text/plain').send('the dashboard is read-only: start it with --allow-writes and a token to retry, clean or delete jobs\n');
      return;
    }
    // A page on another site must not borrow the browser's saved credentials to act here.
    if (req.headers.origin !== undefined && originHost(req.headers.origin) !== req.headers.host) {
      res.status(403).type('text/plain').send('cross-origin writes are refused\n');
      return;
    }
    next();
  };
}
