/**
 * The warm-up lane's result parts (self-calibrating runs): where they are stored and their shape,
 * a result part plus, on the first stage, that stage's answers for the warm-up images it forwarded.
 */
import { z } from 'zod';
import { WarmupAnswer } from '../self-calibration.js';
import { ResultPart } from './manifest.js';

/** A warm-up part: a result part, plus on the first stage its answers for the images it forwarded. */
export const WarmupPart = ResultPart.extend({ warmupAnswers: z.array(WarmupAnswer).optional() });
export type WarmupPart = z.infer<typeof WarmupPart>;
