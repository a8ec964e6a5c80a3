/**
 * Where the public sample models and their label file come from, with the SHA-256 of the exact
 * files the tests and benchmarks use. `cascade models download` fetches and verifies them; the
 * checksums, not the URLs, are authoritative (a mirror serving the same bytes is as good).
 *
 * The ensemble in config/models/ensemble.yaml is not here: it was built in this workplace from
 * three zoo models (shared/assets/tools/build_ensemble.py) and is published nowhere, so outside
 * the workplace the quick start cascades shufflenet into mobilenetv2 (README).
 */
import { z } from 'zod';

export const ModelSource = z
  .object({
    /** Short name used on the command line. */
    name: z.string(),
    /** Folder under the assets folder (`$CASCADE_ASSETS`) where config/models/*.yaml expect the file. */
    folder: z.enum(['models', 'labels']),
    /** File name in that folder. */
    file: z.string(),
    url: z.string().url(),
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    license: z.string(),
    /** The source (by name) of the label file this model's spec names: fetched with it. */
    labels: z.string().optional(),
  })
  .strict();
export type ModelSource = z.infer<typeof ModelSource>;

/** The label file every sample spec names. */
export const IMAGENET_LABELS = 'imagenet-labels';

/** The ONNX model zoo files behind config/models/{shufflenet,mobilenetv2}.yaml, and their label file. */
export const MODEL_SOURCES: readonly ModelSource[] = [
  {
    name: 'shufflenet',
    folder: 'models',
    file: 'shufflenet-v2-12-qdq.onnx',
    url: 'https://github.com/onnx/models/raw/main/validated/vision/classification/shufflenet/model/shufflenet-v2-12-qdq.onnx',
    sha256: '7c536d02e2f6af9569e5f3c7a4d8282060072119524c93c8da71e63876b4722b',
    license: 'BSD-3-Clause',
    labels: IMAGENET_LABELS,
  },
  {
    name: 'mobilenetv2',
    folder: 'models',
    file: 'mobilenetv2-12-int8.onnx',
    url: 'https://github.com/onnx/models/raw/main/validated/vision/classification/mobilenet/model/mobilenetv2-12-int8.onnx',
    sha256: '83530ad811bc31d2b60a5599a21265a5057608c9b044b4ee758cc22f2309f54f',
    license: 'Apache-2.0',
    labels: IMAGENET_LABELS,
  },
  {
    // Keras' ImageNet class index, the file keras.applications downloads (Keras pins it by MD5
    // c2c37ea517e94d9795004a39431a14cb; these are the same bytes). It parses to the same classes
    // as shared/assets/labels/imagenet_class_index.json, whose copy only adds a leading " \n" and a
    // trailing newline, so its sha256 differs from this one.
    name: IMAGENET_LABELS,
    folder: 'labels',
    file: 'imagenet_class_index.json',
    url: 'https://storage.googleapis.com/download.tensorflow.org/data/imagenet_class_index.json',
    sha256: 'a1e7a966a1f601d39e4b43e119b3e7dd4a2ad3ea08cf69847cbaf021013767bc',
    license: 'Apache-2.0 (Keras)',
  },
];
