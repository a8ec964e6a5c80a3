/**
 * Seeded random passwords full of what breaks URL redaction (@ : / # ? % spaces, unicode), and
 * the 3-character fragments of one that must never be printed.
 */
import { seeded } from '../../bench/stats.js';

/** Characters a password draws from: URL delimiters, a space, and letters and symbols no message of ours holds. */
const SPECIAL = ['@', ':', '/', '#', '?', '%', ' '];
const RARE = ['Q', 'X', 'Z', 'J', 'K', 'q', 'x', 'z', 'é', 'ж', '漢', '🙂'];

/** `count` passwords of 6–20 characters from `seed`; each holds at least one '@' and one rare letter. */
export function randomPasswords(seed: number, count: number): string[] {
  const next = seeded(seed);
  const pick = (from: string[]) => from[Math.floor(next() * from.length)]!;
  return Array.from({ length: count }, () => {
    const length = 6 + Math.floor(next() * 15);
    const chars = Array.from({ length }, () => (next() < 0.5 ? pick(SPECIAL) : pick(RARE)));
    chars[Math.floor(next() * length)] = '@';
    chars[Math.floor(next() * length)] = pick(RARE);
    return chars.join('');
  });
}

/**
 * The 3-character fragments of `password` (by code point) that could only come from it: those
 * holding a rare letter (a fragment of delimiters alone, like "://", is in every URL).
 */
export function secretFragments(password: string): string[] {
  const cps = [...password];
  const out = new Set<string>();
  for (let i = 0; i + 3 <= cps.length; i++) {
    const f = cps.slice(i, i + 3);
    if (f.some((c) => RARE.includes(c))) out.add(f.join(''));
  }
  return [...out];
}

/** The fragments of `password` that `text` shows (empty when nothing leaked). */
export function leakedFragments(text: string, password: string): string[] {
  return secretFragments(password).filter((f) => text.includes(f));
}
