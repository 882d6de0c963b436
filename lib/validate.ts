// Argument checks at the edge of the API. Each throws MQ_ERR_INVALID_ARGS
// naming the value and what was expected, before anything is charged.
import type { Logger } from 'pino';

import { invalidArgument } from './errors';

/** MQTT strings are at most 65,535 bytes of UTF-8. */
export const MAX_CLIENT_ID_BYTES = 65535;

/** Throws unless `value` is a byte count: a non-negative safe integer. */
export function assertBytes(name: string, value: unknown): asserts value is number {
  assertCount(name, value, 'bytes');
}

/** Throws unless `value` is a non-negative safe integer count of `unit`. */
export function assertCount(name: string, value: unknown, unit: string): asserts value is number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw invalidArgument(name, value, `a non-negative safe integer number of ${unit}`);
  }
}

/** Throws unless `value` is a number of seconds (0 to 4294967295, as MQTT 5 allows). */
export function assertSeconds(name: string, value: unknown): asserts value is number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw invalidArgument(name, value, 'an integer number of seconds from 0 to 4294967295');
  }
}

/** Throws when `options` has a key that `known` does not list, because a
 * misspelt option would otherwise be ignored without a word. */
export function assertKnownOptions(name: string, options: object, known: readonly string[]): void {
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      const value = (options as Record<string, unknown>)[key];
      throw invalidArgument(`${name} key ${JSON.stringify(key)}`, value, `only the options ${known.join(', ')}`);
    }
  }
}

/** The maximum delay Node's timers accept, in milliseconds. They run a
 * longer one after 1 ms instead, with a TimeoutOverflowWarning. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** The maximum delay Node's timers accept, in whole seconds. */
export const MAX_TIMER_SECONDS = Math.floor(MAX_TIMER_MS / 1000);

/** Throws unless `value` is a timer interval: an integer number of `unit`
 * from 0 to the maximum delay Node's timers accept. */
export function assertInterval(name: string, value: unknown, unit: 'seconds' | 'milliseconds'): asserts value is number {
  const max = unit === 'seconds' ? MAX_TIMER_SECONDS : MAX_TIMER_MS;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > max) {
    throw invalidArgument(name, value, `an integer number of ${unit} from 0 to ${max}, the maximum interval Node timers support`);
  }
}

/**
 * Throws unless `value` is a usable client id: a non-empty, well-formed
 * string (no lone surrogates, which UTF-8 cannot carry and which would make
 * two ids collide) of at most 65,535 bytes of UTF-8, without U+0000, which
 * MQTT forbids in its strings (MQTT 3.1.1 section 1.5.3, MQTT 5 section 1.5.4).
 */
export function assertClientId(value: unknown): asserts value is string {
  if (typeof value !== 'string' || value.length === 0) {
    throw invalidArgument('clientId', value, 'a non-empty string');
  }
  if (!value.isWellFormed()) {
    throw invalidArgument('clientId', value, 'a well-formed Unicode string without lone surrogates');
  }
  if (value.includes('\u0000')) {
    throw invalidArgument('clientId', value, 'a string without U+0000, which MQTT forbids in strings');
  }
  if (value.length > MAX_CLIENT_ID_BYTES / 3 && Buffer.byteLength(value, 'utf8') > MAX_CLIENT_ID_BYTES) {
    throw invalidArgument('clientId', value, `at most ${MAX_CLIENT_ID_BYTES} bytes of UTF-8`);
  }
}

/** Throws unless `value` is a non-empty string. */
export function assertName(name: string, value: unknown): asserts value is string {
  if (typeof value !== 'string' || value.length === 0) {
    throw invalidArgument(name, value, 'a non-empty string');
  }
}

// The logger methods this package calls.
const LOGGER_METHODS = ['debug', 'info', 'warn', 'error'] as const;

/** Throws unless `value` has the logger methods this package calls, as a
 * pino logger or one of its child loggers does. */
export function assertLogger(name: string, value: unknown): asserts value is Logger {
  const logger = value as Record<string, unknown> | null;
  if (logger === null || typeof logger !== 'object' || LOGGER_METHODS.some((method) => typeof logger[method] !== 'function')) {
    throw invalidArgument(name, value, 'a pino logger (an object with debug, info, warn and error methods)');
  }
}

/** Throws when `payload` is empty because its memory was released or
 * transferred (a detached ArrayBuffer), which would store an empty message
 * in place of the bytes the caller meant. */
export function assertLivePayload(name: string, payload: Uint8Array): void {
  if (payload.byteLength !== 0) return;
  try {
    // Building a view of a detached ArrayBuffer throws a TypeError. Node 20
    // lacks ArrayBuffer.prototype.detached, which would report it directly.
    new Uint8Array(payload.buffer, 0, 0);
  } catch {
    throw invalidArgument(name, payload, 'a live Buffer: this one was released or transferred, so its memory is detached');
  }
}
