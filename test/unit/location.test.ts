import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatLocation, isS3Url, parseLocation, parseRef, parseS3Url } from '../../pipeline/storage/location.js';

describe('parseLocation', () => {
  it('parses s3 URLs with folder-like prefixes', () => {
    expect(parseLocation('s3://bucket')).toEqual({ kind: 's3', bucket: 'bucket', prefix: '' });
    expect(parseLocation('s3://bucket/')).toEqual({ kind: 's3', bucket: 'bucket', prefix: '' });
    expect(parseLocation('s3://bucket/out')).toEqual({ kind: 's3', bucket: 'bucket', prefix: 'out/' });
    expect(parseLocation('s3://my.bucket-1/a/b/')).toEqual({ kind: 's3', bucket: 'my.bucket-1', prefix: 'a/b/' });
    expect(parseLocation('S3://bucket/x')).toEqual({ kind: 's3', bucket: 'bucket', prefix: 'x/' });
  });

  it('keeps S3 keys as data', () => {
    expect(parseLocation('s3://bucket/a b/..é/%2e%2e/ ../é?x=1').kind).toBe('s3');
    expect(parseLocation('s3://bucket/a b/..é/%2e%2e/ ../é?x=1')).toMatchObject({ prefix: 'a b/..é/%2e%2e/ ../é?x=1/' });
  });

  it("refuses '.' and '..' key segments, which HTTP would fold into another object", () => {
    for (const s of ['s3://bucket/../x', 's3://bucket/a/../../x', 's3://bucket//../x', 's3://bucket/..', 's3://bucket/a/./b', 's3://bucket/a/..//']) {
      expect(() => parseLocation(s)).toThrow(/malformed S3 URL: the key has a '\.{1,2}' segment/);
      expect(() => parseRef(s)).toThrow(expect.objectContaining({ name: 'ForbiddenPathError', code: 'FORBIDDEN_PATH' }));
    }
  });

  it('resolves local paths to absolute ones', () => {
    expect(parseLocation('out', '/data')).toEqual({ kind: 'local', path: '/data/out' });
    expect(parseLocation('/abs/dir/')).toEqual({ kind: 'local', path: '/abs/dir' });
    expect(parseLocation('./x')).toEqual({ kind: 'local', path: path.resolve('x') });
    expect(parseLocation('file:///tmp/some%20dir')).toEqual({ kind: 'local', path: '/tmp/some dir' });
    // A colon without "//" is a file name, not a scheme.
    expect(parseLocation('c:out', '/d')).toEqual({ kind: 'local', path: '/d/c:out' });
  });

  it('rejects bad input with clear messages', () => {
    expect(() => parseLocation('')).toThrow(/Empty location/);
    expect(() => parseLocation('   ')).toThrow(/Empty location/);
    expect(() => parseLocation('s3://')).toThrow(/bucket name is empty/);
    expect(() => parseLocation('s3:///prefix')).toThrow(/bucket name is empty/);
    expect(() => parseLocation('s3:/bucket/x')).toThrow(/Malformed S3 URL/);
    expect(() => parseLocation('s3:bucket')).toThrow(/Malformed S3 URL/);
    expect(() => parseLocation('s3://ab/x')).toThrow(/invalid bucket name "ab"/);
    expect(() => parseLocation('s3://bad bucket/x')).toThrow(/invalid bucket name/);
    expect(() => parseLocation('s3://-bucket/x')).toThrow(/invalid bucket name/);
    expect(() => parseLocation('s3://a..b/x')).toThrow(/invalid bucket name/);
    expect(() => parseLocation('gs://bucket/x')).toThrow(/Unsupported location .*"gs:\/\/"/);
    expect(() => parseLocation('https://example.com/x')).toThrow(/Unsupported location/);
    expect(() => parseLocation('a\0b')).toThrow(/NUL/);
  });
});

describe('parseS3Url / isS3Url', () => {
  it('returns the raw key', () => {
    expect(parseS3Url('s3://bucket/a/b.jpg')).toEqual({ bucket: 'bucket', key: 'a/b.jpg' });
    expect(parseS3Url('s3://bucket/a//b/')).toEqual({ bucket: 'bucket', key: 'a//b/' });
    expect(parseS3Url('s3://bucket')).toEqual({ bucket: 'bucket', key: '' });
    expect(isS3Url('s3://x')).toBe(true);
    expect(isS3Url('/s3://x')).toBe(false);
  });
});

describe('formatLocation', () => {
  it('round-trips', () => {
    for (const s of ['s3://bucket/', 's3://bucket/a/b/', '/abs/path']) expect(formatLocation(parseLocation(s))).toBe(s);
    expect(formatLocation(parseLocation('s3://bucket/a'))).toBe('s3://bucket/a/');
  });
});

describe('parseRef', () => {
  it('tells S3, file URLs, other schemes and plain paths apart', () => {
    expect(parseRef('s3://bucket/a/b.jpg')).toEqual({ kind: 's3', bucket: 'bucket', key: 'a/b.jpg' });
    expect(parseRef('S3://bucket/')).toEqual({ kind: 's3', bucket: 'bucket', key: '' });
    expect(parseRef('file:///tmp/some%20dir/x.jpg')).toEqual({ kind: 'local', path: '/tmp/some dir/x.jpg' });
    expect(parseRef('FILE:///tmp/x')).toEqual({ kind: 'local', path: '/tmp/x' });
    expect(parseRef('HTTPS://example.com/x')).toEqual({ kind: 'unsupported', scheme: 'https' });
    // Plain paths stay as written: resolving them is the caller's business.
    expect(parseRef('rel/x.jpg')).toEqual({ kind: 'local', path: 'rel/x.jpg' });
    expect(parseRef('c:out')).toEqual({ kind: 'local', path: 'c:out' });
    expect(parseRef('')).toEqual({ kind: 'local', path: '' });
  });

  it('throws on malformed S3 and file URLs', () => {
    expect(() => parseRef('s3:bucket')).toThrow(/Malformed S3 URL/);
    expect(() => parseRef('s3://ab/x')).toThrow(/invalid bucket name/);
    expect(() => parseRef('file://host/x')).toThrow(/Malformed file URL "file:\/\/host\/x"/);
  });
});
