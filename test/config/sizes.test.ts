import fc from 'fast-check';

import { checkSize, parseDuration, parseSize } from '../../lib/config/sizes';

describe('parseSize', () => {
  test.each<[unknown, number]>([
    [0, 0],
    [1, 1],
    [1048576, 1048576],
    [Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
    ['0', 0],
    ['007', 7],
    ['1048576', 1048576],
    ['0B', 0],
    ['17B', 17],
    ['1KB', 1000],
    ['1MB', 1000 ** 2],
    ['1GB', 1000 ** 3],
    ['1KiB', 1024],
    ['1MiB', 1024 ** 2],
    ['1GiB', 1024 ** 3],
    ['512MiB', 512 * 1024 ** 2],
    ['1 MiB', 1024 ** 2],
    ['256 KiB', 256 * 1024],
    ['1.5KiB', 1536],
    ['1.5 KB', 1500],
    ['0.3MB', 300_000],
    ['2.0B', 2],
    ['1.000001MB', 1_000_001],
    ['8388607GiB', 8388607 * 1024 ** 3],
  ])('accepts %p as %p bytes', (input, bytes) => {
    expect(parseSize(input)).toBe(bytes);
  });

  test.each<[unknown, string]>([
    ['', 'not a number of bytes'],
    [' 1MiB', 'not a number of bytes'],
    ['1MiB ', 'not a number of bytes'],
    ['1  MiB', 'not a number of bytes'],
    ['+1', 'not a number of bytes'],
    ['1e6', 'not a number of bytes'],
    ['0x10', 'not a number of bytes'],
    ['1_000', 'not a number of bytes'],
    ['1,5MiB', 'not a number of bytes'],
    ['.5MiB', 'not a number of bytes'],
    ['1.MiB', 'not a number of bytes'],
    ['MiB', 'not a number of bytes'],
    ['abc', 'not a number of bytes'],
    ['-1', 'negative'],
    ['-1MiB', 'negative'],
    ['1mib', 'units are case-sensitive: write MiB'],
    ['1kb', 'units are case-sensitive: write KB'],
    ['1KIB', 'units are case-sensitive: write KiB'],
    ['1TB', 'unknown unit "TB"'],
    ['1Mi', 'unknown unit "Mi"'],
    ['1.5', 'a number without a unit is a count of bytes'],
    ['1.1KiB', '1126.4 bytes, which is not a whole number'],
    ['0.1B', '0.1 bytes'],
    // A double would round this product to 9007199254740991.
    ['8388607.999999999GiB', '9007199254740990.926258176 bytes, which is not a whole number'],
    ['0.0001KB', '0.1 bytes'],
    ['1.0000001MB', 'not a whole number'],
    ['99999999999999999999', 'larger than the maximum'],
    ['8388608GiB', 'larger than the maximum'],
    [-1, 'negative'],
    [1.5, 'not a whole number of bytes'],
    [Number.NaN, 'NaN'],
    [Number.POSITIVE_INFINITY, 'infinite'],
    [Number.NEGATIVE_INFINITY, 'negative'],
    [2 ** 53, 'larger than the maximum'],
  ])('rejects %p as a RangeError', (input, problem) => {
    expect(() => parseSize(input)).toThrow(RangeError);
    expect(() => parseSize(input)).toThrow(problem);
  });

  test.each<[unknown, string]>([
    [null, 'null'],
    [undefined, 'undefined'],
    [true, 'boolean'],
    [[1], 'a list'],
    [{ bytes: 1 }, 'a map'],
    [10n, 'bigint'],
  ])('rejects %p as a TypeError', (input, typeName) => {
    expect(() => parseSize(input)).toThrow(TypeError);
    expect(() => parseSize(input)).toThrow(typeName);
  });

  test('message names value and accepted forms', () => {
    expect(() => parseSize('12XB')).toThrow(
      /^Invalid size "12XB": unknown unit "XB"\. Expected a size: .*KiB, MiB, GiB/,
    );
  });

  test('-0 reads as 0', () => {
    expect(Object.is(parseSize(-0), 0)).toBe(true);
  });

  test('plain integers round-trip', () => {
    fc.assert(
      fc.property(fc.nat({ max: Number.MAX_SAFE_INTEGER }), (n) => {
        expect(parseSize(n)).toBe(n);
        expect(parseSize(String(n))).toBe(n);
      }),
    );
  });

  test('binary and decimal units multiply exactly', () => {
    fc.assert(
      fc.property(fc.nat({ max: 8_000_000 }), (n) => {
        expect(parseSize(`${n}KiB`)).toBe(n * 1024);
        expect(parseSize(`${n} MB`)).toBe(n * 1_000_000);
        expect(parseSize(`${n}GiB`)).toBe(n * 1024 ** 3);
      }),
    );
  });

  test('decimal fractions are exact', () => {
    // n.ddd MB is n * 10^6 + ddd * 10^3 bytes, exactly, with no rounding.
    fc.assert(
      fc.property(fc.nat({ max: 1_000_000 }), fc.integer({ min: 0, max: 999 }), (whole, thousandths) => {
        const fraction = String(thousandths).padStart(3, '0');
        expect(parseSize(`${whole}.${fraction}MB`)).toBe(whole * 1_000_000 + thousandths * 1000);
      }),
    );
  });

  test('checkSize reports without throwing', () => {
    expect(checkSize('2KiB')).toEqual({ ok: true, value: 2048 });
    expect(checkSize('2XiB')).toEqual({ ok: false, problem: 'unknown unit "XiB"' });
  });
});

describe('parseDuration', () => {
  test.each<[unknown, number]>([
    [0, 0],
    [300, 300],
    ['300', 300],
    ['0', 0],
  ])('accepts %p', (input, seconds) => {
    expect(parseDuration(input)).toBe(seconds);
  });

  test.each<[unknown, string]>([
    [-1, 'negative'],
    ['-1', 'negative'],
    [1.5, 'not a whole number of seconds'],
    ['1.5', 'not a whole number of seconds'],
    ['5m', 'not a whole number of seconds'],
    ['300s', 'not a whole number of seconds'],
    ['', 'not a whole number of seconds'],
    [Number.NaN, 'NaN'],
    [2 ** 53, 'larger than the maximum'],
  ])('rejects %p', (input, problem) => {
    expect(() => parseDuration(input)).toThrow(RangeError);
    expect(() => parseDuration(input)).toThrow(problem);
  });

  test('rejects wrong types', () => {
    expect(() => parseDuration(null)).toThrow(TypeError);
    expect(() => parseDuration({})).toThrow(TypeError);
  });

  test('enforces the given maximum', () => {
    expect(parseDuration(10, 10)).toBe(10);
    expect(() => parseDuration(11, 10)).toThrow('larger than the maximum of 10 seconds');
  });
});
