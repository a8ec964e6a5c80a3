/**
 * The export formats as pure functions: Ground Truth rows and names, imagefolder file names
 * relative to a root, and the Label Studio labeling config parsed back with a real XML parser.
 */
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { describe, expect, it } from 'vitest';
import {
  defaultJobName,
  GroundTruthLabelAttribute,
  groundTruthDate,
  groundTruthRow,
  groundTruthRowSchema,
} from '../../pipeline/results/ground-truth-export.js';
import { ImagefolderRow, imagefolderRow, relativeFileName, rootPrefix } from '../../pipeline/results/imagefolder-export.js';
import { labelStudioConfig, xmlAttribute } from '../../pipeline/results/label-studio-config.js';
import type { ManifestRow } from '../../pipeline/results/manifest.js';

const row = (over: Partial<ManifestRow> = {}): ManifestRow => ({
  key: 's3://bucket/photos/a/cat.jpg',
  label: 281,
  labelName: 'tabby',
  confidence: 0.8125,
  stage: 'little',
  top5: [],
  error: null,
  ...over,
});

/** Parse a labeling config the way a strict XML reader does; returns the Choice values and hints. */
function parseConfig(xml: string): { choices: Array<{ value: string; hint?: string }>; control: Record<string, string> } {
  expect(XMLValidator.validate(xml)).toBe(true);
  const parsed = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '', isArray: (name) => name === 'Choice' }).parse(xml);
  const choices = parsed.View.Choices.Choice as Array<{ value: string; hint?: string }>;
  const { Choice: _, ...control } = parsed.View.Choices;
  return { choices, control };
}

describe('Ground Truth output manifest rows', () => {
  it('a labelled row has source-ref, the class index and the documented metadata, and parses back strictly', () => {
    const line = groundTruthRow(row(), { labelAttribute: 'species', jobName: 'cascade-run1', creationDate: new Date('2026-11-30T16:19:01.123Z') });
    expect(line).toEqual({
      'source-ref': 's3://bucket/photos/a/cat.jpg',
      species: 281,
      'species-metadata': {
        'class-name': 'tabby',
        confidence: 0.8125,
        type: 'groundtruth/image-classification',
        'job-name': 'cascade-run1',
        'human-annotated': 'no',
        'creation-date': '2026-11-30T16:19:01.123000',
      },
    });
    expect(groundTruthRowSchema('species').parse(JSON.parse(JSON.stringify(line)))).toEqual(line);
    // The schema is strict: another attribute's row does not pass.
    expect(groundTruthRowSchema('label').safeParse(line).success).toBe(false);
  });

  it('error rows have no line; a row without a class name uses the index', () => {
    const o = { labelAttribute: 'label', jobName: 'j', creationDate: new Date(0) };
    expect(groundTruthRow(row({ label: null, labelName: null, confidence: null, stage: null, error: { kind: 'decode', message: 'bad' } }), o)).toBeNull();
    expect((groundTruthRow(row({ labelName: null }), o)!['label-metadata'] as Record<string, unknown>)['class-name']).toBe('281');
    expect(groundTruthDate(new Date(0))).toBe('1970-01-01T00:00:00.000000');
  });

  it('label attribute and job names follow CreateLabelingJob’s rules', () => {
    for (const ok of ['label', 'sport', 'a', 'image-class-2', 'a--b']) expect(GroundTruthLabelAttribute.safeParse(ok).success, ok).toBe(true);
    for (const bad of ['', '-x', 'x-', 'has space', 'under_score', 'class-metadata', 'mask-ref', 'x'.repeat(128)])
      expect(GroundTruthLabelAttribute.safeParse(bad).success, bad).toBe(false);
    expect(defaultJobName('8edb48c937dc7528')).toBe('cascade-8edb48c937dc7528');
    expect(defaultJobName('my_run.2026/11')).toBe('cascade-my-run-2026-11');
    expect(defaultJobName('x'.repeat(80))).toHaveLength(63);
  });
});

describe('imagefolder metadata rows', () => {
  it('file_name is relative to the root, local or S3; other keys are outside, error rows are errors', () => {
    const s3 = rootPrefix('s3://bucket/photos');
    expect(s3).toBe('s3://bucket/photos/');
    expect(imagefolderRow(row(), s3)).toEqual({
      kind: 'row',
      row: { file_name: 'a/cat.jpg', label: 281, label_name: 'tabby', confidence: 0.8125, stage: 'little' },
    });
    expect(ImagefolderRow.parse({ file_name: 'a/cat.jpg', label: 281, label_name: 'tabby', confidence: 0.8125, stage: 'little' })).toBeTruthy();
    expect(imagefolderRow(row(), rootPrefix('s3://bucket/photo'))).toEqual({ kind: 'outside' });
    expect(imagefolderRow(row({ error: { kind: 'decode', message: 'x' }, label: null }), s3)).toEqual({ kind: 'error' });
    expect(rootPrefix('data/photos/', '/srv')).toBe('/srv/data/photos/');
    expect(relativeFileName('/srv/data/photos/x y/#1.png', rootPrefix('/srv/data/photos'))).toBe('x y/#1.png');
    expect(relativeFileName('/srv/data/photos2/x.png', '/srv/data/photos/')).toBeNull();
    expect(relativeFileName('s3://bucket/photos/../secret.jpg', 's3://bucket/photos/')).toBeNull();
    expect(ImagefolderRow.safeParse({ file_name: '../x.png', label: 1, label_name: null, confidence: 1, stage: 'big' }).success).toBe(false);
  });
});

describe('Label Studio labeling config', () => {
  it('has one Choice per class, in class order, for a thousand classes', () => {
    const names = Array.from({ length: 1000 }, (_, i) => `class_${i}`);
    const config = labelStudioConfig(names);
    expect(config.choices).toBe(1000);
    const { choices, control } = parseConfig(config.xml);
    expect(choices.map((c) => c.value)).toEqual(names);
    expect(control).toEqual({ name: 'choice', toName: 'image', choice: 'single', showInline: 'false' });
    expect(config.xml).toContain('<Image name="image" value="$image"/>');
  });

  it('escapes every character XML gives a meaning, and the parser gives back the exact names', () => {
    const names = [`yellow_lady's_slipper`, 'a & b', '<tag>', 'say "hi"', 'tab\there', 'two\nlines', 'cr\rhere', 'amp;&amp;', 'ünïcødé ✓'];
    const { xml } = labelStudioConfig(names);
    expect(xml).toContain(`<Choice value="yellow_lady&apos;s_slipper"/>`);
    expect(xml).toContain(`<Choice value="amp;&amp;amp;"/>`);
    const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '', isArray: (n) => n === 'Choice', htmlEntities: true });
    const parsed = parser.parse(xml).View.Choices.Choice as Array<{ value: string }>;
    expect(parsed.map((c) => c.value)).toEqual(names);
    expect(() => xmlAttribute('bell\u0007')).toThrow('"bell\\u0007" holds U+0007, which XML cannot hold');
  });

  it('a name two classes share is one Choice hinting both indices', () => {
    const names = ['crane', 'heron', 'crane', 'maillot', 'maillot'];
    const config = labelStudioConfig(names);
    expect(config.choices).toBe(3);
    expect(config.shared).toEqual([
      { name: 'crane', classes: [0, 2] },
      { name: 'maillot', classes: [3, 4] },
    ]);
    expect(parseConfig(config.xml).choices).toEqual([{ value: 'crane', hint: 'classes 0, 2' }, { value: 'heron' }, { value: 'maillot', hint: 'classes 3, 4' }]);
    expect(() => labelStudioConfig([])).toThrow('the label file has no classes');
    expect(() => labelStudioConfig(['a', ''])).toThrow('class 1 has an empty name');
  });
});
