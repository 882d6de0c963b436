/**
 * Parsers for the byte sizes and second counts found in configuration files
 * and environment variables.
 */

/** Bytes per unit. Unit names are matched case-sensitively. */
const UNIT_BYTES: ReadonlyMap<string, bigint> = new Map([
  ['B', 1n],
  ['KB', 1000n],
  ['MB', 1000n ** 2n],
  ['GB', 1000n ** 3n],
  ['KiB', 1024n],
  ['MiB', 1024n ** 2n],
  ['GiB', 1024n ** 3n],
]);

/** Description of an accepted size, for error messages. */
export const SIZE_EXPECTED =
  'a size: a non-negative whole number of bytes, or a number with one of the units ' +
  'B, KB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers of 1024), e.g. 1048576, 512KiB or 1.5 MB';

/** Description of an accepted duration, for error messages. */
export const DURATION_EXPECTED = 'a non-negative whole number of seconds, e.g. 300';

// Digits, an optional fraction, one optional space, an optional unit. A
// fraction without a unit is rejected later with its own message.
const SIZE_PATTERN = /^(\d+)(?:\.(\d+))? ?([A-Za-z]+)?$/;
const DIGITS_PATTERN = /^\d+$/;

/** The outcome of checking a size or duration without throwing. */
export type ParseResult = { ok: true; value: number } | { ok: false; problem: string };

/**
 * Checks a size and converts it to bytes. Accepts a non-negative safe integer,
 * a string of digits, or a number with a unit. A fractional number is allowed
 * with a unit only when the product is a whole number of bytes (`1.5KiB` is
 * 1536, `1.1KiB` is rejected), because rounding would silently change a limit.
 */
export function checkSize(input: unknown): ParseResult {
  if (typeof input === 'number') {
    return checkWholeNumber(input, 'bytes');
  }
  if (typeof input !== 'string') {
    return { ok: false, problem: `it must be a number or a string, not ${describeType(input)}` };
  }

  const match = SIZE_PATTERN.exec(input);
  if (match === null) {
    const negative = input.startsWith('-') && SIZE_PATTERN.test(input.slice(1));
    return { ok: false, problem: negative ? 'it is negative' : 'it is not a number of bytes or a number with a unit' };
  }
  const [, integerDigits, fractionDigits, unit] = match as unknown as [
    string,
    string,
    string | undefined,
    string | undefined,
  ];

  if (unit === undefined && fractionDigits !== undefined) {
    return { ok: false, problem: 'a number without a unit is a count of bytes and must be a whole number' };
  }
  const unitBytes = unit === undefined ? 1n : UNIT_BYTES.get(unit);
  if (unitBytes === undefined) {
    return { ok: false, problem: describeUnknownUnit(unit as string) };
  }

  // Exact arithmetic in BigInt, because 0.3 * 1e6 in floating point is not
  // exactly 300000 and the whole-number check must not depend on rounding.
  const fraction = fractionDigits ?? '';
  const scale = 10n ** BigInt(fraction.length);
  const scaledBytes = BigInt(integerDigits + fraction) * unitBytes;
  if (scaledBytes % scale !== 0n) {
    // Spelt out from the BigInts: a double would round 8388607.999999999GiB
    // to a whole number.
    const remainder = (scaledBytes % scale).toString().padStart(fraction.length, '0').replace(/0+$/, '');
    const exact = `${scaledBytes / scale}.${remainder}`;
    return { ok: false, problem: `it is ${exact} bytes, which is not a whole number of bytes` };
  }
  const bytes = scaledBytes / scale;
  if (bytes > BigInt(Number.MAX_SAFE_INTEGER)) {
    return { ok: false, problem: `it is larger than the maximum of ${Number.MAX_SAFE_INTEGER} bytes` };
  }
  return { ok: true, value: Number(bytes) };
}

/**
 * Parses a size (see checkSize) and returns it in bytes.
 * @throws TypeError for a value that is neither a number nor a string.
 * @throws RangeError for a malformed, negative, fractional or too large size.
 */
export function parseSize(input: unknown): number {
  const result = checkSize(input);
  if (!result.ok) {
    throwInvalid('size', input, result.problem, SIZE_EXPECTED);
  }
  return result.value;
}

/**
 * Checks a duration in whole seconds: a non-negative safe integer or a string
 * of digits, at most `max`.
 */
export function checkDuration(input: unknown, max = Number.MAX_SAFE_INTEGER): ParseResult {
  return checkCount(input, 'seconds', max);
}

/**
 * Checks a count of `unitName` (a non-negative safe integer or a string of
 * digits), at most `max`.
 */
export function checkCount(input: unknown, unitName: string, max = Number.MAX_SAFE_INTEGER): ParseResult {
  let result: ParseResult;
  if (typeof input === 'number') {
    result = checkWholeNumber(input, unitName);
  } else if (typeof input === 'string') {
    if (DIGITS_PATTERN.test(input)) {
      result = checkWholeNumber(Number(input), unitName);
    } else if (/^-\d+$/.test(input)) {
      result = { ok: false, problem: 'it is negative' };
    } else {
      result = { ok: false, problem: `it is not a whole number of ${unitName}` };
    }
  } else {
    return { ok: false, problem: `it must be a number or a string, not ${describeType(input)}` };
  }

  if (result.ok && result.value > max) {
    return { ok: false, problem: `it is larger than the maximum of ${max} ${unitName}` };
  }
  return result;
}

/**
 * Parses a duration in whole seconds (see checkDuration).
 * @throws TypeError for a value that is neither a number nor a string.
 * @throws RangeError for a malformed, negative, fractional or too large value.
 */
export function parseDuration(input: unknown, max?: number): number {
  const result = checkDuration(input, max);
  if (!result.ok) {
    throwInvalid('duration', input, result.problem, DURATION_EXPECTED);
  }
  return result.value;
}

/** Returns a short English description of a value's type, as YAML users see it. */
export function describeType(value: unknown): string {
  if (value === null) {
    return 'null';
  }
  if (Array.isArray(value)) {
    return 'a list';
  }
  if (typeof value === 'object') {
    return 'a map';
  }
  return `a ${typeof value}`;
}

function checkWholeNumber(value: number, unitName: string): ParseResult {
  if (Number.isNaN(value)) {
    return { ok: false, problem: 'it is NaN' };
  }
  if (value < 0) {
    return { ok: false, problem: 'it is negative' };
  }
  if (!Number.isFinite(value)) {
    return { ok: false, problem: 'it is infinite' };
  }
  if (!Number.isInteger(value)) {
    return { ok: false, problem: `it is not a whole number of ${unitName}` };
  }
  if (!Number.isSafeInteger(value)) {
    return { ok: false, problem: `it is larger than the maximum of ${Number.MAX_SAFE_INTEGER} ${unitName}` };
  }
  // -0 passes every check above; it means 0.
  return { ok: true, value: value === 0 ? 0 : value };
}

function describeUnknownUnit(unit: string): string {
  for (const known of UNIT_BYTES.keys()) {
    if (known.toLowerCase() === unit.toLowerCase()) {
      return `unknown unit "${unit}" (units are case-sensitive: write ${known})`;
    }
  }
  return `unknown unit "${unit}"`;
}

function throwInvalid(kind: string, input: unknown, problem: string, expected: string): never {
  let inputText: string;
  if (typeof input === 'string') {
    inputText = JSON.stringify(input);
  } else if (typeof input === 'number') {
    inputText = String(input);
  } else {
    inputText = describeType(input);
  }
  const message = `Invalid ${kind} ${inputText}: ${problem}. Expected ${expected}.`;
  if (typeof input === 'number' || typeof input === 'string') {
    throw new RangeError(message);
  }
  throw new TypeError(message);
}
