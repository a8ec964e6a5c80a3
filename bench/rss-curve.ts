/** The RSS benchmark's samples cut down to a printable curve: time, images, rate, RSS. */
import type { RssSample } from './rss.js';

/** About `rows` evenly spaced samples (always the last), each with the images/s since the row before. */
export function rssCurve(samples: readonly RssSample[], rows: number): Array<Array<string | number>> {
  if (samples.length === 0) return [];
  const step = Math.max(1, Math.round(samples.length / rows));
  const picked = samples.filter((_, i) => i % step === 0 || i === samples.length - 1);
  return picked.map((s, i) => {
    const prev = picked[i - 1];
    const rate = prev && s.seconds > prev.seconds ? (s.images - prev.images) / (s.seconds - prev.seconds) : '';
    return [s.seconds.toFixed(0), s.images, rate, s.rssMb];
  });
}
