/**
 * Connection URLs may carry a password (redis://:secret@host); log lines must never show it.
 */

/** `url` with its password replaced by `***`; an unparsable URL is hidden entirely, since it may still hold one. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString().replace(/\/$/, '');
  } catch {
    return '(unparsable url, hidden)';
  }
}
