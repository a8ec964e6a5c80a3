/**
 * The audit section of a run summary: live little/big agreement on accepted images with a
 * Wilson interval, and drift against the agreement the calibration promised.
 */
import { z } from 'zod';
import { wilsonInterval } from '../calibration/wilson.js';

export const AuditSummary = z.object({
  /** Configured fraction of accepted images audited. */
  fraction: z.number(),
  /** Audited images the last stage labeled. */
  sampled: z.number().int().nonnegative(),
  agreeing: z.number().int().nonnegative(),
  /** agreeing / sampled (0 when nothing was sampled). */
  agreement: z.number(),
  /** 95% Wilson interval of the agreement. */
  wilson: z.object({ low: z.number(), high: z.number() }),
  /** Agreement the calibration promised (config `audit.expectAgreement`), when given. */
  promised: z.number().optional(),
  /** True when even the interval's upper bound is below the promise: the little model drifted. */
  drift: z.boolean(),
  /** GMACs the last stage spent on audits, on top of the cascade's own compute. */
  gmacs: z.number().nonnegative().optional(),
});
export type AuditSummary = z.infer<typeof AuditSummary>;

/** Summarise audit counts against an optional promised agreement. */
export function summarizeAudit(counts: { sampled: number; agreeing: number }, fraction: number, promised?: number, gmacs?: number): AuditSummary {
  const { low, high } = wilsonInterval(counts.agreeing, counts.sampled);
  return {
    fraction,
    sampled: counts.sampled,
    agreeing: counts.agreeing,
    agreement: counts.sampled ? counts.agreeing / counts.sampled : 0,
    wilson: { low, high },
    ...(promised === undefined ? {} : { promised }),
    drift: promised !== undefined && counts.sampled > 0 && high < promised,
    ...(gmacs === undefined ? {} : { gmacs }),
  };
}
