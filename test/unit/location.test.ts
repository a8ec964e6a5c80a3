import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { expectedUrls, formatLocation, isRemoteUrl, isS3Url, parseLocation, parseRef, parseRemoteUrl, remoteScheme } from '../../pipeline/storage/location.js';

describe('parseLocation', () => {
  it('parses s3 URLs with folder-like prefixes', () => {
    expect(parseLocation('s3://bucket')).toEqual({ kind: 'remote', scheme: 's3', bucket: 'bucket', prefix: '' });
    expect(parseLocation('s3://bucket/')).toEqual({ kind: 'remote', scheme: 's3', bucket: 'bucket', prefix: '' });
    expect(parseLocation('s3://bucket/out')).toEqual({ kind: 'remote', scheme: 's3', bucket: 'bucket', prefix: 'out/' });
    expect(parseLocation('s3://my.bucket-1/a/b/')).toEqual({ kind: 'remote', scheme: 's3', bucket: 'my.bucket-1', prefix: 'a/b/' });
    expect(parseLocation('S3://bucket/x')).toEqual({ kind: 'remote', scheme: 's3', bucket: 'bucket', prefix: 'x/' });
  });

  it('keeps S3 keys as data', () => {
    expect(parseLocation('s3://bucket/a b/..é/%2e%2e/ ../é?x=1').kind).toBe('remote');
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

describe('parseRemoteUrl / isRemoteUrl', () => {
  it('returns the scheme and the raw key', () => {
    expect(parseRemoteUrl('s3://bucket/a/b.jpg')).toEqual({ scheme: 's3', bucket: 'bucket', key: 'a/b.jpg' });
    expect(parseRemoteUrl('S3://bucket/a//b/')).toEqual({ scheme: 's3', bucket: 'bucket', key: 'a//b/' });
    expect(parseRemoteUrl('s3://bucket')).toEqual({ scheme: 's3', bucket: 'bucket', key: '' });
    expect(isS3Url('s3://x')).toBe(true);
    expect(isS3Url('/s3://x')).toBe(false);
  });

  it('knows only the schemes of the store registry', () => {
    expect(isRemoteUrl('s3://x')).toBe(true);
    expect(isRemoteUrl('S3:bucket')).toBe(true);
    expect(remoteScheme('S3://b/k')).toBe('s3');
    for (const s of ['/s3://x', 'gs://b/k', 'file:///x', 'https://h/x', 'c:out', 'plain/path']) expect(isRemoteUrl(s), s).toBe(false);
    expect(() => parseRemoteUrl('gs://b/k')).toThrow(/Not a store URL "gs:\/\/b\/k": expected s3:\/\/bucket\/key/);
    expect(expectedUrls('prefix')).toBe('s3://bucket/prefix or az://container/prefix');
    expect(remoteScheme('AZ://c0ntainer/k')).toBe('az');
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
    expect(parseRef('s3://bucket/a/b.jpg')).toEqual({ kind: 'remote', scheme: 's3', bucket: 'bucket', key: 'a/b.jpg' });
    expect(parseRef('S3://bucket/')).toEqual({ kind: 'remote', scheme: 's3', bucket: 'bucket', key: '' });
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
