/**
 * Where the public sample models come from, with the SHA-256 of the exact files the tests and
 * benchmarks use. `cascade models download` fetches and verifies them; the checksums, not the
 * URLs, are authoritative (a mirror serving the same bytes is as good).
 */
import { z } from 'zod';

export const ModelSource = z.object({
  /** Short name used on the command line. */
  name: z.string(),
  /** File name under `<assets>/models/`, as the specs in config/models/ expect. */
  file: z.string(),
  url: z.string().url(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  license: z.string(),
});
export type ModelSource = z.infer<typeof ModelSource>;

/** The ONNX model zoo files behind config/models/{shufflenet,mobilenetv2}.yaml. */
export const MODEL_SOURCES: readonly ModelSource[] = [
  {
    name: 'shufflenet',
    file: 'shufflenet-v2-12-qdq.onnx',
    url: 'https://github.com/onnx/models/raw/main/validated/vision/classification/shufflenet/model/shufflenet-v2-12-qdq.onnx',
    sha256: '7c536d02e2f6af9569e5f3c7a4d8282060072119524c93c8da71e63876b4722b',
    license: 'BSD-3-Clause',
  },
  {
    name: 'mobilenetv2',
    file: 'mobilenetv2-12-int8.onnx',
    url: 'https://github.com/onnx/models/raw/main/validated/vision/classification/mobilenet/model/mobilenetv2-12-int8.onnx',
    sha256: '83530ad811bc31d2b60a5599a21265a5057608c9b044b4ee758cc22f2309f54f',
    license: 'Apache-2.0',
  },
];
